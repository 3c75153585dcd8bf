//! Typed services (`#[qtalk::service]`) between two peers over TCP.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::{Cbor, Json};
use qtalk::rpc::{Call, Caller, Error, Peer, RespondMux, Server};

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A counter with every kind of method the attribute takes.
#[qtalk::service]
pub trait Counter {
    /// Adds `n` and returns the new total.
    async fn add(&self, n: u64) -> u64;
    /// The total, without parameters.
    async fn total(&self) -> u64;
    /// Nothing back.
    async fn reset(&self);
    /// An error answer unless `n` divides the total.
    async fn divide_by(&self, n: u64) -> Result<u64, String>;
    /// A selector of its own choosing.
    #[qtalk(selector = "legacy.name")]
    async fn renamed(&self, a: String, b: String) -> String;
    /// Calls back whoever called, through the `Call`.
    async fn greet_caller(&self, call: Call, greeting: String) -> Result<String, String>;
}

#[derive(Default)]
struct MyCounter {
    total: AtomicU64,
}

impl Counter for Arc<MyCounter> {
    async fn add(&self, n: u64) -> u64 {
        self.total.fetch_add(n, Ordering::SeqCst) + n
    }
    async fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
    async fn reset(&self) {
        self.total.store(0, Ordering::SeqCst);
    }
    async fn divide_by(&self, n: u64) -> Result<u64, String> {
        let total = self.total.load(Ordering::SeqCst);
        match total.checked_rem(n) {
            Some(0) => Ok(total / n),
            _ => Err(format!("{n} does not divide {total}")),
        }
    }
    async fn renamed(&self, a: String, b: String) -> String {
        format!("{a}+{b}")
    }
    async fn greet_caller(&self, call: Call, greeting: String) -> Result<String, String> {
        let name: String = call
            .caller()
            .call("Name", &())
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!("{greeting}, {name}"))
    }
}

/// A server for `Counter` mounted under `counter`, and a client peer connected over TCP.
async fn setup(codec_json: bool) -> (Server, Peer, Arc<MyCounter>) {
    let counter = Arc::new(MyCounter::default());
    let mux = RespondMux::new();
    mux.handle("counter", counter.clone().into_mux()).unwrap();
    let server = if codec_json {
        Server::new(mux, Json)
    } else {
        Server::new(mux, Cbor)
    };
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default())
        .await
        .unwrap();
    let peer = if codec_json {
        Peer::new(session, Json)
    } else {
        Peer::new(session, Cbor)
    };
    peer.handle(
        "Name",
        qtalk::rpc::func(|_c: Call, (): ()| async { Ok::<_, String>("client") }),
    )
    .unwrap();
    peer.respond();
    (server, peer, counter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_with_both_codecs() {
    for json in [true, false] {
        let (server, peer, counter) = setup(json).await;
        let client = CounterClient::with_prefix(peer.caller().clone(), "counter");
        assert_eq!(within("add", client.add(5)).await.unwrap(), 5);
        assert_eq!(client.add(10).await.unwrap(), 15);
        assert_eq!(client.total().await.unwrap(), 15);
        assert_eq!(client.divide_by(3).await.unwrap(), 5);
        let err = client.divide_by(4).await.unwrap_err();
        assert!(
            matches!(&err, Error::Remote(m) if m == "4 does not divide 15"),
            "{err}"
        );
        let err = client.divide_by(0).await.unwrap_err();
        assert_eq!(err.remote_message(), Some("0 does not divide 15"));
        client.reset().await.unwrap();
        assert_eq!(counter.total.load(Ordering::SeqCst), 0);
        assert_eq!(client.renamed("a".into(), "b".into()).await.unwrap(), "a+b");
        assert_eq!(
            within("callback", client.greet_caller("hello".into()))
                .await
                .unwrap(),
            "hello, client"
        );

        // Many calls at once.
        let calls = (0..50).map(|_| client.add(2));
        for r in within("50 calls", futures_util::future::join_all(calls)).await {
            r.unwrap();
        }
        assert_eq!(client.total().await.unwrap(), 100);

        // The wire names: Go-style selectors under the prefix, positional arguments.
        let caller: &Caller = peer.caller();
        let n: u64 = caller.call("counter.Add", &[1]).await.unwrap();
        assert_eq!(n, 101);
        let s: String = caller
            .call("counter/legacy/name", &["x", "y"])
            .await
            .unwrap();
        assert_eq!(s, "x+y");
        let err = caller
            .call::<_, u64>("counter.Add", &[1, 2])
            .await
            .unwrap_err();
        assert_eq!(err.remote_message(), Some("fn: expected 1 params, got 2"));
        let err = caller
            .call::<_, u64>("counter.Add", &["one"])
            .await
            .unwrap_err();
        assert!(err.remote_message().is_some(), "{err}");
        // Without the prefix there is no such selector.
        let unprefixed = CounterClient::new(caller.clone());
        let err = unprefixed.total().await.unwrap_err();
        assert_eq!(err.remote_message(), Some("not found: /Total"));

        peer.close();
        server.shutdown(Duration::from_secs(1)).await;
    }
}
