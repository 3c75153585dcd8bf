//! Spare channels: a caller opens the channel of its next call alongside the current one
//! (`Options::spare_channels`), so that a call over qmux takes one round trip.

use std::time::Duration;

use qtalk::codec::Json;
use qtalk::rpc::{Caller, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Two qmux sessions over TCP loopback: (client, server).
async fn pair() -> (qtalk::mux::Session, qtalk::mux::Session) {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(
        qtalk::mux::transport::connect_tcp(addr, Default::default()),
        listener.accept()
    );
    (a.unwrap(), b.unwrap())
}

/// Reads the call header and arguments the caller wrote on `ch` (two JSON rpc frames),
/// returns the selector, and answers with `"ok"`.
async fn answer(ch: &mut qtalk::mux::Channel) -> String {
    let mut frames = Vec::new();
    for _ in 0..2 {
        let len = ch.read_u32().await.unwrap() as usize;
        let mut body = vec![0u8; len];
        ch.read_exact(&mut body).await.unwrap();
        frames.push(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
    }
    let mut reply = Vec::new();
    for body in [br#"{"Error":null,"Continue":false}"#.as_slice(), br#""ok""#] {
        reply.extend_from_slice(&(body.len() as u32).to_be_bytes());
        reply.extend_from_slice(body);
    }
    ch.write_all(&reply).await.unwrap();
    ch.close().unwrap();
    frames[0]["Selector"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_call_goes_out_on_the_spare_opened_alongside_the_last() {
    let (client, server) = pair().await;
    let caller = Caller::new(client, Json);
    let first = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("First", &()).await }
    });
    // The first call opens its own channel and, alongside, the spare.
    let mut ch1 = within(5, "first channel", server.accept()).await.unwrap();
    let mut spare = within(5, "the spare", server.accept()).await.unwrap();
    // Which of the two carries the call depends on the order of the opens.
    let (selector, mut other) = tokio::select! {
        s = answer(&mut ch1) => (s, spare),
        s = answer(&mut spare) => (s, ch1),
    };
    assert_eq!(selector, "First");
    assert_eq!(within(5, "first call", first).await.unwrap().unwrap(), "ok");
    // The second call takes the spare, already accepted here, and opens the next spare.
    let second = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("Second", &()).await }
    });
    assert_eq!(
        within(5, "second on the spare", answer(&mut other)).await,
        "Second"
    );
    assert_eq!(
        within(5, "second call", second).await.unwrap().unwrap(),
        "ok"
    );
    let next = within(5, "the next spare", server.accept()).await.unwrap();
    drop(next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_spares_each_call_opens_its_own_channel_only() {
    let (client, server) = pair().await;
    let caller = Caller::with_options(
        client.clone(),
        Json,
        Options::builder().spare_channels(0).build().unwrap(),
    );
    for selector in ["One", "Two"] {
        let call = tokio::spawn({
            let caller = caller.clone();
            async move { caller.call::<_, String>(selector, &()).await }
        });
        let mut ch = within(5, "the call's channel", server.accept())
            .await
            .unwrap();
        assert_eq!(answer(&mut ch).await, selector);
        assert_eq!(within(5, "call", call).await.unwrap().unwrap(), "ok");
    }
    // No channel left open on the caller's side once the calls' closes are done.
    within(5, "no channel held", async {
        while client.channel_count() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_spare_is_closed_not_used() {
    let (client, server) = pair().await;
    let caller = Caller::with_options(
        client,
        Json,
        Options::builder()
            .spare_max_age(Duration::ZERO)
            .build()
            .unwrap(),
    );
    let first = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("First", &()).await }
    });
    let mut a = within(5, "a channel", server.accept()).await.unwrap();
    let mut b = within(5, "a channel", server.accept()).await.unwrap();
    let mut spare = tokio::select! {
        _ = answer(&mut a) => b,
        _ = answer(&mut b) => a,
    };
    within(5, "first call", first).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await; // older than the zero maximum age
    let second = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("Second", &()).await }
    });
    // The stale spare is closed without a call on it; the call opens a channel of its own.
    let mut rest = Vec::new();
    within(5, "the stale spare ends", spare.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    let mut c = within(5, "a channel", server.accept()).await.unwrap();
    let mut d = within(5, "a channel", server.accept()).await.unwrap();
    tokio::select! {
        s = answer(&mut c) => assert_eq!(s, "Second"),
        s = answer(&mut d) => assert_eq!(s, "Second"),
    }
    within(5, "second call", second).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_caller_with_a_spare_closes_the_session() {
    let (client, server) = pair().await;
    let caller = Caller::new(client, Json);
    let call = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("Only", &()).await }
    });
    let mut a = within(5, "a channel", server.accept()).await.unwrap();
    let mut b = within(5, "a channel", server.accept()).await.unwrap();
    tokio::select! {
        _ = answer(&mut a) => {},
        _ = answer(&mut b) => {},
    }
    within(5, "call", call).await.unwrap().unwrap();
    // The caller was the last handle of its session; its spare goes with it.
    drop(caller);
    let why = within(1, "the session ends", server.wait()).await;
    assert!(matches!(why, qtalk::mux::Error::PeerClosed), "{why}");
}
