//! Per-call metadata and deadlines (the call header's `Meta` and `Deadline`): the bytes on
//! the wire, with and without them; a deadline through a chain of three peers (A → B → C)
//! in paused time; the limits; and the errors that say the session is gone, or that a server
//! is shutting down.

use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::{Cbor, Codec, Json};
use qtalk::mux::{Config, Session};
use qtalk::rpc::{
    func, handler_fn, Call, CallContext, Caller, Error, Options, Peer, RespondMux, Responder,
    Server,
};
use tokio::time::Instant;

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Two sessions over an in-memory pipe.
fn pipe() -> (Session, Session) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    (
        Session::new(a, Config::default()),
        Session::new(b, Config::default()),
    )
}

/// The rpc frames a recording shows the caller sending: the payloads of its DATA frames.
fn recorded_call_bytes(file: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("C> ") else {
            continue;
        };
        let tokens: Vec<&str> = rest.split('#').next().unwrap().split_whitespace().collect();
        if tokens.first() != Some(&"68") {
            continue;
        }
        // type, channel, length, then the payload.
        for t in &tokens[3..] {
            for i in (0..t.len()).step_by(2) {
                out.push(u8::from_str_radix(&t[i..i + 2], 16).unwrap());
            }
        }
    }
    out
}

/// What our caller writes on the call's channel for `Call("Upper", ["hello world"])`,
/// with `ctx`.
async fn call_bytes(codec: Arc<dyn Codec>, ctx: CallContext) -> Vec<u8> {
    let (a, b) = pipe();
    // No spare channel: the first channel opened is the call's.
    let options = Options::builder().spare_channels(0).build().unwrap();
    let caller = Caller::with_options(a, codec, options);
    let call = tokio::spawn(async move {
        let _ = caller
            .call_with::<_, String>(&ctx, "Upper", &["hello world"])
            .await;
    });
    let mut ch = within(5, "the call's channel", b.accept()).await.unwrap();
    let mut got = Vec::new();
    // Header and arguments go out in one write; read until both frames are whole.
    loop {
        let frames = {
            let mut n = 0;
            let mut rest = &got[..];
            while rest.len() >= 4 {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                if rest.len() < 4 + len {
                    break;
                }
                rest = &rest[4 + len..];
                n += 1;
            }
            n
        };
        if frames == 2 {
            break;
        }
        let chunk = within(5, "call bytes", ch.read_chunk(usize::MAX)).await;
        got.extend_from_slice(&chunk.unwrap().expect("more bytes"));
    }
    call.abort();
    got
}

#[tokio::test]
async fn without_metadata_or_deadline_the_call_is_byte_identical_to_the_recordings() {
    for (codec, file) in [
        (Arc::new(Json) as Arc<dyn Codec>, "json_upper.txt"),
        (Arc::new(Cbor), "cbor_upper.txt"),
    ] {
        let ours = call_bytes(codec, CallContext::new()).await;
        assert_eq!(ours, recorded_call_bytes(file), "{file}");
    }
}

#[tokio::test(start_paused = true)]
async fn metadata_and_deadline_on_the_wire() {
    let ctx = CallContext::new()
        .with_metadata("authorization", "Bearer t")
        .with_metadata("x-request-id", "r1")
        .with_timeout(Duration::from_millis(1500));
    let json = call_bytes(Arc::new(Json), ctx.clone()).await;
    let header = br#"{"Selector":"Upper","Meta":{"authorization":"Bearer t","x-request-id":"r1"},"Deadline":1500}"#;
    let mut want = (header.len() as u32 + 1).to_be_bytes().to_vec();
    want.extend_from_slice(header);
    want.push(b'\n');
    assert_eq!(
        &json[..want.len()],
        &want[..],
        "{}",
        String::from_utf8_lossy(&json)
    );

    // CBOR: a map of three, the keys in this order, `Deadline` an unsigned integer.
    let cbor = call_bytes(Arc::new(Cbor), ctx).await;
    let header = &cbor[4..4 + u32::from_be_bytes(cbor[..4].try_into().unwrap()) as usize];
    let mut want = vec![0xa3, 0x68];
    want.extend_from_slice(b"Selector");
    want.extend_from_slice(&[0x65]);
    want.extend_from_slice(b"Upper");
    want.extend_from_slice(&[0x64]);
    want.extend_from_slice(b"Meta");
    want.extend_from_slice(&[0xa2, 0x6d]);
    want.extend_from_slice(b"authorization");
    want.extend_from_slice(&[0x68]);
    want.extend_from_slice(b"Bearer t");
    want.extend_from_slice(&[0x6c]);
    want.extend_from_slice(b"x-request-id");
    want.extend_from_slice(&[0x62]);
    want.extend_from_slice(b"r1");
    want.extend_from_slice(&[0x68]);
    want.extend_from_slice(b"Deadline");
    want.extend_from_slice(&[0x19, 0x05, 0xdc]);
    assert_eq!(header, &want[..]);
}

/// What C saw of the call B made on behalf of A.
#[derive(Debug)]
struct Seen {
    remaining: Option<Duration>,
    trace: Option<String>,
    token: Option<String>,
    cancelled_at: Instant,
}

#[tokio::test(start_paused = true)]
async fn a_deadline_travels_through_a_chain_and_cancels_at_its_end() {
    let start = Instant::now();
    // A -> B, B -> C, each over its own session.
    let (ab_a, ab_b) = pipe();
    let (bc_b, bc_c) = pipe();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();

    let c = Peer::new(bc_c, Json);
    c.handle(
        "Leaf",
        handler_fn(move |_r: Responder, call: Call| {
            let seen_tx = seen_tx.clone();
            async move {
                let remaining = call.remaining();
                let meta = call.metadata();
                let (trace, token) = (
                    meta.get("x-trace").map(String::from),
                    meta.get("authorization").map(String::from),
                );
                // Never answers: waits for the deadline.
                call.cancelled().await;
                let _ = seen_tx.send(Seen {
                    remaining,
                    trace,
                    token,
                    cancelled_at: Instant::now(),
                });
            }
        }),
    )
    .unwrap();
    c.respond();

    let to_c = Caller::new(bc_b, Json);
    let b = Peer::new(ab_b, Json);
    b.handle(
        "Mid",
        handler_fn(move |r: Responder, call: Call| {
            let to_c = to_c.clone();
            async move {
                // Two seconds of work before calling on.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let ctx = call.context().forward(&["x-trace"]);
                let res = to_c.call_with::<_, String>(&ctx, "Leaf", &()).await;
                let _ = match res {
                    Ok(v) => r.ret(&v).await,
                    Err(e) => r.error(e).await,
                };
            }
        }),
    )
    .unwrap();
    b.respond();

    let a = Caller::new(ab_a, Json);
    let ctx = CallContext::new()
        .with_metadata("x-trace", "t-1")
        .with_metadata("authorization", "for B only")
        .with_timeout(Duration::from_secs(10));
    let err = a
        .call_with::<_, String>(&ctx, "Mid", &())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err}");
    assert_eq!(start.elapsed(), Duration::from_secs(10));

    let seen = within(5, "C's report", seen.recv()).await.unwrap();
    // A's ten seconds, less B's two.
    assert_eq!(seen.remaining, Some(Duration::from_secs(8)));
    assert_eq!(seen.trace.as_deref(), Some("t-1"));
    assert_eq!(seen.token, None, "metadata not chosen is not forwarded");
    assert_eq!(seen.cancelled_at - start, Duration::from_secs(10));
}

#[tokio::test]
async fn metadata_over_the_limit_is_refused_on_both_sides() {
    let (a, b) = pipe();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mux = RespondMux::new();
    let r2 = ran.clone();
    mux.handle(
        "Echo",
        func(move |_c: Call, (s,): (String,)| {
            r2.store(true, std::sync::atomic::Ordering::SeqCst);
            async move { Ok::<_, String>(s) }
        }),
    )
    .unwrap();
    let small = Options::builder().max_metadata(100).build().unwrap();
    let server = Server::with_options(mux, Json, small);
    server.respond(b);
    let big = "v".repeat(200);

    // A caller with the default (larger) limit sends it; the server refuses the call.
    let caller = Caller::new(a, Json);
    let ctx = CallContext::new().with_metadata("k", big.as_str());
    let err = caller
        .call_with::<_, String>(&ctx, "Echo", &["x"])
        .await
        .unwrap_err();
    let msg = err.remote_message().expect("a remote error").to_string();
    assert!(
        msg.starts_with("bad call header: rpc: metadata of 233 bytes"),
        "{msg}"
    );
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    // Within the limit it goes through.
    let ok = CallContext::new().with_metadata("k", "v");
    let v: String = caller.call_with(&ok, "Echo", &["x"]).await.unwrap();
    assert_eq!(v, "x");

    // A caller with the small limit does not send it at all.
    let (a, _b) = pipe();
    let strict = Caller::with_options(
        a,
        Json,
        Options::builder().max_metadata(100).build().unwrap(),
    );
    let err = strict
        .call_with::<_, String>(&ctx, "Echo", &["x"])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::MetadataTooLarge {
                size: 233,
                max: 100
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_deadlines_and_expired_calls() {
    let (a, b) = pipe();
    let peer = Peer::new(b, Json);
    peer.handle(
        "Left",
        func(|call: Call, (): ()| async move {
            // Waiting on it does not panic either.
            tokio::select! {
                biased;
                _ = call.cancelled() => return Err("cancelled".to_string()),
                _ = tokio::task::yield_now() => {}
            }
            Ok::<_, String>(call.remaining().map(|d| d.as_secs()))
        }),
    )
    .unwrap();
    peer.respond();

    // A `Deadline` of 2^64-1 ms: nothing panics; the handler sees a very distant deadline.
    let mut ch = a.open().await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let header = br#"{"Selector":"Left","Deadline":18446744073709551615}"#;
    buf.extend_from_slice(&(header.len() as u32).to_be_bytes());
    buf.extend_from_slice(header);
    buf.extend_from_slice(&5u32.to_be_bytes());
    buf.extend_from_slice(b"null\n");
    ch.write_bytes(buf.freeze()).await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = within(5, "answer", ch.read_chunk(usize::MAX))
        .await
        .unwrap()
    {
        got.extend_from_slice(&c);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(r#"{"Error":null,"Continue":false}"#),
        "{text}"
    );
    // The last frame: the seconds left, as a number.
    let last = text.rsplit('\0').next().unwrap();
    let secs: u64 = last
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .trim()
        .parse()
        .unwrap();
    assert!(secs > 1 << 50, "{text}");

    // A call whose deadline passed is not sent.
    let caller = Caller::new(a, Json);
    let past = CallContext::new().with_deadline(Instant::now());
    let err = caller
        .call_with::<_, Option<u64>>(&past, "Left", &())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err}");
    // A caller's default timeout reaches the responder.
    let left: Option<u64> = caller
        .clone()
        .with_timeout(Duration::from_secs(60))
        .call("Left", &())
        .await
        .unwrap();
    assert!(matches!(left, Some(58..=60)), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_gone_is_one_error_kind_at_every_step() {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        qtalk::mux::transport::connect_tcp(addr, Config::default()),
        listener.accept()
    );
    let (client, server) = (client.unwrap(), server.unwrap());
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let peer = Peer::new(server.clone(), Json);
    peer.handle(
        "Hang",
        handler_fn(move |_r: Responder, _call: Call| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                std::future::pending::<()>().await;
            }
        }),
    )
    .unwrap();
    peer.respond();
    let caller = Caller::new(client, Json);
    // Reading the answer when the peer goes away.
    let call = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("Hang", &()).await }
    });
    within(5, "call started", started.recv()).await.unwrap();
    server.close();
    let err = within(5, "call ends", call).await.unwrap().unwrap_err();
    assert!(err.is_session_gone(), "reading: {err:?}");
    // Opening on the ended session.
    let err = caller.call::<_, String>("Hang", &()).await.unwrap_err();
    assert!(err.is_session_gone(), "opening: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_refuses_new_calls_and_lets_running_ones_finish() {
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let mux = RespondMux::new();
    let g = go.clone();
    mux.handle(
        "Hold",
        func(move |_c: Call, (): ()| {
            let (started_tx, go) = (started_tx.clone(), g.clone());
            async move {
                let _ = started_tx.send(());
                go.acquire().await.unwrap().forget();
                Ok::<_, String>("released")
            }
        }),
    )
    .unwrap();
    let server = Server::new(mux, Json);
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve(listener).await })
    };
    let session = qtalk::mux::transport::connect_tcp(addr, Config::default())
        .await
        .unwrap();
    let caller = Caller::new(session, Json);
    let running = tokio::spawn({
        let caller = caller.clone();
        async move { caller.call::<_, String>("Hold", &()).await }
    });
    within(5, "call started", started.recv()).await.unwrap();
    let shutdown = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(Duration::from_secs(60)).await }
    });
    // The server stops accepting sessions...
    within(5, "serve returns", serving).await.unwrap().unwrap();
    // ... and refuses new calls on the sessions it has, with a clear error.
    let err = caller.call::<_, String>("Hold", &()).await.unwrap_err();
    assert!(err.is_shutting_down(), "{err}");
    assert_eq!(
        err.to_string(),
        format!("remote: {}", qtalk::rpc::SHUTTING_DOWN)
    );
    assert_eq!(server.calls_in_flight(), 1);
    // The running call finishes, then the shutdown ends (long before its grace period).
    go.add_permits(1);
    assert_eq!(
        within(5, "running call", running).await.unwrap().unwrap(),
        "released"
    );
    within(5, "shutdown", shutdown).await.unwrap();
    let err = caller.call::<_, String>("Hold", &()).await.unwrap_err();
    assert!(err.is_session_gone(), "{err:?}");
}

#[tokio::test]
async fn a_session_given_to_a_server_shutting_down_is_closed_not_kept() {
    let server = Server::new(RespondMux::new(), Json);
    server.shutdown(Duration::ZERO).await;
    let (a, b) = pipe();
    server.respond(b.clone());
    drop(b);
    // Closed by the server (its list held the last handle before): both sides end.
    within(5, "the server closes the late session", a.wait()).await;
}

/// A handler that gives up at the deadline without answering is answered `deadline
/// exceeded`, not `null` (which would reach a caller whose own timer had not fired yet as a
/// value); a handler that returns nothing in time is still answered `null`.
#[tokio::test(start_paused = true)]
async fn a_handler_that_gives_up_at_the_deadline_is_answered_deadline_exceeded() {
    let (a, b) = pipe();
    let peer = Peer::new(b, Json);
    peer.handle(
        "Slow",
        handler_fn(|_r: Responder, call: Call| async move { call.cancelled().await }),
    )
    .unwrap();
    peer.handle("Quick", handler_fn(|_r: Responder, _c: Call| async {}))
        .unwrap();
    peer.respond();
    let caller = Caller::new(a, Json);
    let ctx = CallContext::new().with_timeout(Duration::from_millis(300));

    // Read as it arrives (a request's response is not bounded by the deadline here).
    let req = caller.request_with(&ctx, "Slow").await.unwrap();
    req.close_write().unwrap();
    let err = within(5, "the answer", req.response()).await.unwrap_err();
    assert_eq!(err.remote_message(), Some(qtalk::rpc::DEADLINE_EXCEEDED));
    // A call reports it as a time-out.
    let ctx = CallContext::new().with_timeout(Duration::from_millis(300));
    let err = caller
        .call_with::<_, ()>(&ctx, "Slow", &())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    // Nothing returned in time is `null`.
    let ctx = CallContext::new().with_timeout(Duration::from_secs(5));
    let v: Option<String> = caller.call_with(&ctx, "Quick", &()).await.unwrap();
    assert_eq!(v, None);

    // The in-memory harness answers as the server does.
    let slow = handler_fn(|_r: Responder, call: Call| async move { call.cancelled().await });
    let reply = qtalk::rpc::testing::TestCall::new("Slow")
        .timeout(Duration::from_millis(300))
        .run(&slow)
        .await;
    assert_eq!(
        reply.error().as_deref(),
        Some(qtalk::rpc::DEADLINE_EXCEEDED)
    );
}
