//! RPC behaviour between two Rust peers over TCP loopback, with both codecs: the checklist of
//! the reference's rpc tests, plus bad input.

use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::{Cbor, Codec, Json};
use qtalk::rpc::{
    func, handler_fn, proxy_handler, Call, Caller, Error, Peer, RespondMux, Responder, Server,
};
use qtalk::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Two peers over TCP loopback, both answering calls.
async fn peers(codec: Arc<dyn Codec>) -> (Peer, Peer) {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(
        qtalk::mux::transport::connect_tcp(addr, Default::default()),
        listener.accept()
    );
    let a = Peer::new(a.unwrap(), codec.clone());
    let b = Peer::new(b.unwrap(), codec.clone());
    a.respond();
    b.respond();
    (a, b)
}

/// `server` serving a TCP listener on a free loopback port: the address, and the serving task.
async fn serve_tcp(
    server: &Server,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    (
        addr,
        tokio::spawn(async move { server.serve(listener).await }),
    )
}

fn codecs() -> Vec<Arc<dyn Codec>> {
    vec![Arc::new(Json), Arc::new(Cbor)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_follows_the_reference() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        let answer =
            |text: &'static str| func(move |_c: Call, (): ()| async move { Ok::<_, String>(text) });
        b.handle("foo", answer("foo")).unwrap();
        b.handle("bar", answer("bar")).unwrap();
        let c = a.caller();
        assert_eq!(c.call::<_, String>("foo", &()).await.unwrap(), "foo");
        assert_eq!(c.call::<_, String>("bar", &()).await.unwrap(), "bar");
        let err = c.call::<_, String>("baz", &()).await.unwrap_err();
        assert_eq!(err.to_string(), "remote: not found: /baz");

        // "" is the default handler; exact matches still win.
        b.handle("", answer("default")).unwrap();
        assert_eq!(c.call::<_, String>("baz", &()).await.unwrap(), "default");
        assert_eq!(c.call::<_, String>("foo", &()).await.unwrap(), "foo");

        // A sub-mux mounted at "foo.bar" serves "foo.bar.baz".
        let sub = RespondMux::new();
        sub.handle("baz", answer("sub baz")).unwrap();
        b.handle("foo.bar", sub).unwrap();
        assert_eq!(
            c.call::<_, String>("foo.bar.baz", &()).await.unwrap(),
            "sub baz"
        );
        assert_eq!(
            c.call::<_, String>("/foo/bar/baz", &()).await.unwrap(),
            "sub baz"
        );

        // "/foo/bar" reaches the handler registered as "foo.bar" (exact).
        b.handle("qux.quux", answer("qux.quux")).unwrap();
        assert_eq!(
            c.call::<_, String>("/qux/quux", &()).await.unwrap(),
            "qux.quux"
        );

        // A pattern ending in "." catches everything below it.
        b.handle("x.y.", answer("x.y.*")).unwrap();
        assert_eq!(c.call::<_, String>("x.y.z", &()).await.unwrap(), "x.y.*");

        // Remove.
        assert!(b.mux().remove("foo").is_some());
        assert_eq!(c.call::<_, String>("foo", &()).await.unwrap(), "default");
        assert!(b.mux().remove("").is_some());
        let err = c.call::<_, String>("foo", &()).await.unwrap_err();
        assert_eq!(err.remote_message(), Some("not found: /foo"));

        // Duplicate registration is refused.
        assert!(b.handle("bar", answer("again")).is_err());
        assert!(b.handle("/bar", answer("again")).is_err());
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_error_multi_value_and_null() {
    for codec in codecs() {
        let (a, b) = peers(codec.clone()).await;
        b.handle(
            "echo",
            handler_fn(|r: Responder, mut call: Call| async move {
                let v: Value = call.receive().await.unwrap();
                r.ret(&v).await.unwrap();
            }),
        )
        .unwrap();
        b.handle(
            "fail",
            handler_fn(|r: Responder, _call: Call| async move {
                r.error("user error").await.unwrap();
            }),
        )
        .unwrap();
        b.handle(
            "two",
            handler_fn(|r: Responder, _call: Call| async move {
                r.ret_many([Value::from("a"), Value::from(2)])
                    .await
                    .unwrap();
            }),
        )
        .unwrap();
        b.handle("nothing", handler_fn(|_r: Responder, _c: Call| async {}))
            .unwrap();
        b.handle(
            "panics",
            handler_fn(|_r: Responder, _c: Call| async { panic!("boom in handler") }),
        )
        .unwrap();

        let c = a.caller();
        let resp = c.call_raw("echo", &"hi").await.unwrap();
        assert!(!resp.is_continued());
        let v: String = c.call("echo", &"hi").await.unwrap();
        assert_eq!(v, "hi");

        let err = c.call::<_, Value>("fail", &()).await.unwrap_err();
        assert!(matches!(err, Error::Remote(ref m) if m == "user error"));
        assert_eq!(err.to_string(), "remote: user error");

        let mut resp = c.call_raw("two", &()).await.unwrap();
        let first: String = resp.receive().await.unwrap();
        let second: i64 = resp.receive().await.unwrap();
        assert_eq!((first.as_str(), second), ("a", 2));

        let v: Value = c.call("nothing", &()).await.unwrap();
        assert_eq!(v, Value::Null);

        let err = c.call::<_, Value>("panics", &()).await.unwrap_err();
        let msg = err.remote_message().unwrap();
        assert!(msg.contains("boom in handler"), "{msg}");
        // The session keeps serving after a panic.
        let v: String = c.call("echo", &"still").await.unwrap();
        assert_eq!(v, "still");
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positional_params_check_their_count() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        b.handle(
            "sum",
            func(|call: Call, (x, y): (i64, i64)| async move {
                assert_eq!(call.selector(), "/sum");
                Ok::<_, String>(x + y)
            }),
        )
        .unwrap();
        let c = a.caller();
        assert_eq!(c.call::<_, i64>("sum", &[2, 3]).await.unwrap(), 5);
        for (args, got) in [(vec![1], 1), (vec![1, 2, 3], 3), (vec![], 0)] {
            let err = c.call::<_, i64>("sum", &args).await.unwrap_err();
            assert_eq!(
                err.remote_message(),
                Some(format!("fn: expected 2 params, got {got}").as_str())
            );
        }
        let err = c.call::<_, i64>("sum", &()).await.unwrap_err();
        assert_eq!(err.remote_message(), Some("fn: expected 2 params, got 0"));
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_in_every_direction() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        // Server streaming: continue, send three values, end.
        b.handle(
            "count",
            handler_fn(|r: Responder, mut call: Call| async move {
                let n: i64 = call.receive().await.unwrap();
                let mut out = r.continue_with(&()).await.unwrap();
                for i in 0..n {
                    out.send(&i).await.unwrap();
                }
                out.close_write().unwrap();
            }),
        )
        .unwrap();
        // Client streaming: receive until the caller ends, answer the count.
        b.handle(
            "collect",
            handler_fn(|r: Responder, mut call: Call| async move {
                let _args: Value = call.receive().await.unwrap();
                let mut got = Vec::new();
                while let Some(v) = call.receive_next::<i64>().await.unwrap() {
                    got.push(v);
                }
                r.ret(&got).await.unwrap();
            }),
        )
        .unwrap();
        // Both: continue, then echo every value doubled.
        b.handle(
            "double",
            handler_fn(|r: Responder, mut call: Call| async move {
                let _args: Value = call.receive().await.unwrap();
                let mut out = r.continue_with(&()).await.unwrap();
                while let Some(v) = call.receive_next::<i64>().await.unwrap() {
                    out.send(&(v * 2)).await.unwrap();
                }
                out.close_write().unwrap();
            }),
        )
        .unwrap();

        let c = a.caller();
        let mut resp = c.call_raw("count", &3).await.unwrap();
        assert!(resp.is_continued());
        let _null: Value = resp.receive().await.unwrap();
        let mut got = Vec::new();
        while let Some(v) = resp.receive_next::<i64>().await.unwrap() {
            got.push(v);
        }
        assert_eq!(got, vec![0, 1, 2]);

        let mut req = c.request("collect").await.unwrap();
        req.send(&()).await.unwrap();
        for i in [10, 20, 30] {
            req.send(&i).await.unwrap();
        }
        req.close_write().unwrap();
        let mut resp = req.response().await.unwrap();
        let collected: Vec<i64> = resp.receive().await.unwrap();
        assert_eq!(collected, vec![10, 20, 30]);

        let mut resp = c.call_raw("double", &()).await.unwrap();
        assert!(resp.is_continued());
        let _null: Value = resp.receive().await.unwrap();
        for i in 1..=3 {
            resp.send(&i).await.unwrap();
        }
        resp.close_write().unwrap();
        let mut got = Vec::new();
        while let Some(v) = resp.receive_next::<i64>().await.unwrap() {
            got.push(v);
        }
        assert_eq!(got, vec![2, 4, 6]);
        a.close();
    }
}

fn bytes_echo() -> impl qtalk::rpc::Handler {
    handler_fn(|r: Responder, mut call: Call| async move {
        let _args: Value = call.receive().await.unwrap();
        let mut out = r.continue_with(&()).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match call.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.write_all(&buf[..n]).await.unwrap(),
            }
        }
        out.shutdown().await.unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_into_a_raw_byte_stream() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        b.handle("bytes", bytes_echo()).unwrap();
        let mut resp = a.caller().call_raw("bytes", &()).await.unwrap();
        assert!(resp.is_continued());
        let _null: Value = resp.receive().await.unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
        let (mut r, mut w) = tokio::io::split(resp);
        let d2 = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&d2).await.unwrap();
            w.shutdown().await.unwrap();
            w
        });
        let mut back = Vec::new();
        within(10, "echo", r.read_to_end(&mut back)).await.unwrap();
        writer.await.unwrap();
        assert!(back == data);
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_copy_bytes_on_continued_calls() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        // The handler answers and continues with bytes in the same write as its reply, so
        // the caller's first chunk comes out of what the frame reader buffered.
        b.handle(
            "echo",
            handler_fn(|r: Responder, mut call: Call| async move {
                let _args: Value = call.receive().await.unwrap();
                let mut out = r.continue_with(&()).await.unwrap();
                out.write_bytes(bytes::Bytes::from_static(b"hello "))
                    .await
                    .unwrap();
                while let Some(chunk) = call.read_chunk(64 * 1024).await.unwrap() {
                    assert!(chunk.len() <= 64 * 1024);
                    out.write_bytes(chunk).await.unwrap();
                }
                out.close_write().unwrap();
            }),
        )
        .unwrap();
        let mut resp = a.caller().call_raw("echo", &()).await.unwrap();
        let _null: Value = resp.receive().await.unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 249) as u8).collect();
        let (mut r, mut w) = resp.into_split();
        let sent = bytes::Bytes::from(data.clone());
        let writer = tokio::spawn(async move {
            for part in sent.chunks(100_000) {
                w.write_bytes(bytes::Bytes::copy_from_slice(part))
                    .await
                    .unwrap();
            }
            w.close_write().unwrap();
            w
        });
        let mut back = Vec::new();
        while let Some(chunk) = within(10, "chunk", r.read_chunk(1000)).await.unwrap() {
            assert!(!chunk.is_empty() && chunk.len() <= 1000);
            back.extend_from_slice(&chunk);
        }
        drop(writer.await.unwrap());
        assert_eq!(&back[..6], b"hello ");
        assert!(back[6..] == data[..]);
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_response_sends_and_receives_at_once() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        b.handle("bytes", bytes_echo()).unwrap();
        // Raw bytes: the writer and the reader in two tasks, neither waiting for the other.
        let resp = a.caller().call_raw("bytes", &()).await.unwrap();
        let (mut r, mut w) = resp.into_split();
        let _null: Value = r.receive().await.unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let d2 = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&d2).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        within(10, "echo", r.read_to_end(&mut back)).await.unwrap();
        writer.await.unwrap();
        assert!(back == data);

        // Values: the echo of each value is read while the next is being sent.
        b.handle(
            "double",
            handler_fn(|r: Responder, mut call: Call| async move {
                let _args: Value = call.receive().await.unwrap();
                let mut out = r.continue_with(&()).await.unwrap();
                while let Some(v) = call.receive_next::<i64>().await.unwrap() {
                    out.send(&(v * 2)).await.unwrap();
                }
                out.close_write().unwrap();
            }),
        )
        .unwrap();
        let resp = a.caller().call_raw("double", &()).await.unwrap();
        let (mut r, mut w) = resp.into_split();
        let _null: Value = r.receive().await.unwrap();
        for i in 1..=3i64 {
            w.send(&i).await.unwrap();
            let v: i64 = within(10, "doubled", r.receive()).await.unwrap();
            assert_eq!(v, 2 * i);
        }
        w.close_write().unwrap();
        assert_eq!(r.receive_next::<i64>().await.unwrap(), None);
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_peers_call_each_other_on_one_session() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        a.handle(
            "hello",
            func(|_c: Call, (): ()| async { Ok::<_, String>("A") }),
        )
        .unwrap();
        b.handle(
            "hello",
            func(|_c: Call, (): ()| async { Ok::<_, String>("B") }),
        )
        .unwrap();
        assert_eq!(a.call::<_, String>("hello", &()).await.unwrap(), "B");
        assert_eq!(b.call::<_, String>("hello", &()).await.unwrap(), "A");
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_calls_back_its_caller() {
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        a.handle(
            "whoami",
            func(|_c: Call, (): ()| async { Ok::<_, String>("the caller") }),
        )
        .unwrap();
        b.handle(
            "greet",
            handler_fn(|r: Responder, call: Call| async move {
                let name: String = call.caller().call("whoami", &()).await.unwrap();
                r.ret(&format!("hello, {name}")).await.unwrap();
            }),
        )
        .unwrap();
        let v: String = a.call("greet", &()).await.unwrap();
        assert_eq!(v, "hello, the caller");
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_deadline_and_cancellation() {
    let (a, b) = peers(Arc::new(Json)).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    b.handle(
        "slow",
        handler_fn(move |r: Responder, mut call: Call| {
            let tx = tx.clone();
            async move {
                let _args: Value = call.receive().await.unwrap();
                // The call's deadline is 100 ms: the handler learns it (from the deadline the
                // header carried, or from the caller closing the channel) ...
                call.cancelled().await;
                assert!(call.deadline().is_some());
                // ... the caller closed the channel, and answering fails.
                let next = call.receive_next::<Value>().await;
                let res = r.ret(&"late").await;
                let _ = tx.send((res.is_err(), next.is_err() || matches!(next, Ok(None))));
            }
        }),
    )
    .unwrap();
    let err = a
        .caller()
        .call_timeout::<_, String>(Duration::from_millis(100), "slow", &())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err}");
    let (answer_failed, input_ended) = within(5, "handler", rx.recv()).await.unwrap();
    assert!(input_ended);
    assert!(answer_failed);
    a.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_handler_forwards_unary_and_streams() {
    for codec in codecs() {
        // backend
        let (front_client, backend) = peers(codec.clone()).await;
        backend
            .handle(
                "upper",
                func(|_c: Call, (s,): (String,)| async move { Ok::<_, String>(s.to_uppercase()) }),
            )
            .unwrap();
        backend.handle("bytes", bytes_echo()).unwrap();
        // front: default handler proxies to the backend
        let (client, front) = peers(codec.clone()).await;
        front
            .handle("", proxy_handler(front_client.caller().clone()))
            .unwrap();
        let c = client.caller();
        assert_eq!(c.call::<_, String>("upper", &["hi"]).await.unwrap(), "HI");
        let err = c.call::<_, String>("missing", &()).await.unwrap_err();
        assert_eq!(err.remote_message(), Some("not found: /missing"));

        let mut resp = c.call_raw("bytes", &()).await.unwrap();
        assert!(resp.is_continued());
        let _null: Value = resp.receive().await.unwrap();
        resp.write_all(b"through the proxy").await.unwrap();
        resp.shutdown().await.unwrap();
        let mut back = Vec::new();
        within(5, "proxied bytes", resp.read_to_end(&mut back))
            .await
            .unwrap();
        assert_eq!(back, b"through the proxy");
        client.close();
        front_client.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_a_listener_and_shuts_down_gracefully() {
    let (addr, server, mut started, go) = holding_server(|s| s).await;
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default())
        .await
        .unwrap();
    let caller = Caller::new(session, Json);
    let in_flight = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("Hold", &()).await }
    });
    within(5, "call starts", started.recv()).await.unwrap();
    assert_eq!(server.calls_in_flight(), 1);
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(Duration::from_secs(30)).await }
    });
    // The call in flight finishes before the session is closed.
    go.add_permits(1);
    assert_eq!(in_flight.await.unwrap().unwrap(), "released");
    within(5, "shutdown", shutdown).await.unwrap();
    assert_eq!(server.calls_in_flight(), 0);
    assert!(caller.call::<_, String>("Hold", &()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_passed_as_values() {
    use qtalk::rpc::Callback;
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Subscribe {
        topic: String,
        notify: Callback,
    }
    for codec in codecs() {
        let (a, b) = peers(codec).await;
        // B calls back whatever callback it receives, nested in a struct.
        b.handle(
            "subscribe",
            func(|call: Call, (sub,): (Subscribe,)| async move {
                let ack: String = sub
                    .notify
                    .call(call.caller(), &[format!("news about {}", sub.topic)])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(ack)
            }),
        )
        .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cb = Callback::register(
            a.caller(),
            func(move |_c: Call, (msg,): (String,)| {
                let tx = tx.clone();
                async move {
                    tx.send(msg).unwrap();
                    Ok::<_, String>("got it")
                }
            }),
        );
        let sub = Subscribe {
            topic: "rust".into(),
            notify: cb.clone(),
        };
        let ack: String = a.call("subscribe", &[&sub]).await.unwrap();
        assert_eq!(ack, "got it");
        assert_eq!(rx.recv().await.unwrap(), "news about rust");

        // A callback also decodes from a dynamic value ({"$fnptr": id} in a map).
        let v: Value = serde_json::from_str(&format!(r#"{{"$fnptr":"{}"}}"#, cb.id)).unwrap();
        let back: Callback = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(back, cb);

        // Unregistered, it is gone.
        assert!(cb.unregister(a.caller()));
        let err = a.call::<_, String>("subscribe", &[&sub]).await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        a.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_reachable_only_from_their_session() {
    use qtalk::rpc::Callback;
    // The server hands each subscriber a callback of its own to call back later.
    let mux = RespondMux::new();
    mux.handle(
        "Subscribe",
        func(|call: Call, (): ()| async move {
            let who = call.caller().clone();
            Ok::<_, String>(Callback::register(
                &who,
                func(|_c: Call, (): ()| async { Ok::<_, String>("unsubscribed") }),
            ))
        }),
    )
    .unwrap();
    let server = Server::new(mux, Json);
    let (addr, serving) = serve_tcp(&server).await;
    let connect = || async {
        let s = qtalk::mux::transport::connect_tcp(addr, Default::default())
            .await
            .unwrap();
        Caller::new(s, Json)
    };
    let (first, second) = (connect().await, connect().await);
    let cb: Callback = first.call("Subscribe", &()).await.unwrap();
    assert_eq!(cb.id.len(), 32, "128-bit id: {}", cb.id);
    let other: Callback = second.call("Subscribe", &()).await.unwrap();
    assert_ne!(cb, other);
    // The second client knows the first one's id but cannot invoke it.
    let err = second.call::<_, String>(&cb.id, &()).await.unwrap_err();
    assert_eq!(
        err.remote_message(),
        Some(format!("not found: /{}", cb.id).as_str())
    );
    // The first client can.
    let r: String = first.call(&cb.id, &()).await.unwrap();
    assert_eq!(r, "unsubscribed");
    within(5, "shutdown", server.shutdown(Duration::from_secs(1))).await;
    within(5, "serve returns", serving).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_calls_started_at_once_all_succeed() {
    let mux = RespondMux::new();
    mux.handle(
        "Upper",
        func(|_c: Call, (s,): (String,)| async move { Ok::<_, String>(s.to_uppercase()) }),
    )
    .unwrap();
    let server = Server::new(mux, Json);
    let (addr, serving) = serve_tcp(&server).await;
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default())
        .await
        .unwrap();
    let caller = Caller::new(session, Json);
    let calls = (0..5000).map(|i| {
        let caller = caller.clone();
        async move {
            caller
                .call::<_, String>("Upper", &[format!("call {i}")])
                .await
        }
    });
    let results = within(60, "5000 calls", futures_util::future::join_all(calls)).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 5000 failed, first: {}",
        failed.len(),
        failed[0]
    );
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), format!("CALL {i}"));
    }
    within(5, "shutdown", server.shutdown(Duration::from_secs(1))).await;
    within(5, "serve returns", serving).await.unwrap().unwrap();
}

/// A server whose `Hold` calls report that they started and then wait for the test's word.
async fn holding_server(
    limit: impl FnOnce(qtalk::rpc::OptionsBuilder) -> qtalk::rpc::OptionsBuilder,
) -> (
    std::net::SocketAddr,
    Server,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    Arc<tokio::sync::Semaphore>,
) {
    let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel();
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let mux = RespondMux::new();
    let g = go.clone();
    mux.handle(
        "Hold",
        func(move |_c: Call, (): ()| {
            let (started, go) = (started_tx.clone(), g.clone());
            async move {
                started.send(()).unwrap();
                go.acquire().await.unwrap().forget();
                Ok::<_, String>("released")
            }
        }),
    )
    .unwrap();
    let options = limit(qtalk::rpc::Options::builder()).build().unwrap();
    let server = Server::with_options(mux, Json, options);
    let (addr, _serving) = serve_tcp(&server).await;
    (addr, server, started_rx, go)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_call_limit_calls_wait_instead_of_failing() {
    let (addr, server, mut started, go) = holding_server(|s| s.max_calls(2)).await;
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default())
        .await
        .unwrap();
    let caller = Caller::new(session, Json);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move { caller.call::<_, String>("Hold", &()).await })
        })
        .collect();
    within(5, "two calls start", async {
        started.recv().await.unwrap();
        started.recv().await.unwrap();
    })
    .await;
    assert_eq!(server.calls_in_flight(), 2);
    // The third starts only once one of the first two ends.
    go.add_permits(1);
    within(5, "third call starts", started.recv())
        .await
        .unwrap();
    go.add_permits(2);
    for c in calls {
        assert_eq!(within(5, "call", c).await.unwrap().unwrap(), "released");
    }
    assert!(started.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_session_limit_new_sessions_wait_for_a_slot() {
    let (addr, _server, mut started, go) = holding_server(|s| s.max_sessions(1)).await;
    let first = Caller::new(
        qtalk::mux::transport::connect_tcp(addr, Default::default())
            .await
            .unwrap(),
        Json,
    );
    let held = tokio::spawn({
        let first = first.clone();
        async move { first.call::<_, String>("Hold", &()).await }
    });
    within(5, "first session's call", started.recv())
        .await
        .unwrap();
    // The second connection is made (the kernel queues it) but not served yet.
    let second = Caller::new(
        qtalk::mux::transport::connect_tcp(addr, Default::default())
            .await
            .unwrap(),
        Json,
    );
    let waiting = tokio::spawn({
        let second = second.clone();
        async move { second.call::<_, String>("Hold", &()).await }
    });
    go.add_permits(1);
    assert_eq!(within(5, "first", held).await.unwrap().unwrap(), "released");
    first.session().close();
    // Once the first session ended, the second is served.
    within(5, "second session's call", started.recv())
        .await
        .unwrap();
    go.add_permits(1);
    assert_eq!(
        within(5, "second", waiting).await.unwrap().unwrap(),
        "released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_responding_peer_closes_its_session() {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(
        qtalk::mux::transport::connect_tcp(addr, Default::default()),
        listener.accept()
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let peer = Peer::new(a, Json);
    peer.handle(
        "Upper",
        func(|_c: Call, (s,): (String,)| async move { Ok::<_, String>(s.to_uppercase()) }),
    )
    .unwrap();
    peer.respond();
    let other = Caller::new(b.clone(), Json);
    assert_eq!(other.call::<_, String>("Upper", &["x"]).await.unwrap(), "X");
    // The peer (its last clone) goes: its session closes, and the other side sees it end.
    drop(peer);
    let why = within(1, "session end", b.wait()).await;
    assert!(matches!(why, qtalk::mux::Error::PeerClosed), "{why}");
}
