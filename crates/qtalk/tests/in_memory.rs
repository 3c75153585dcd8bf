//! Handlers and middleware tested in memory with `rpc::testing`: no session, no transport,
//! no peer.

use std::time::Duration;

use qtalk::codec::Cbor;
use qtalk::mux::{Certificate, ConnectionInfo, TlsInfo, TransportKind};
use qtalk::rpc::layer::AuthLayer;
use qtalk::rpc::testing::TestCall;
use qtalk::rpc::{func, handler_fn, Call, HandlerService, Outcome, Responder};
use tower::{Layer, Service};

/// A handler as an application would write it: it reads the caller's certificate, its
/// metadata and its arguments.
fn whoami() -> impl qtalk::rpc::Handler {
    func(|call: Call, (greeting,): (String,)| async move {
        let cert = call
            .connection()
            .tls()
            .and_then(|t| t.peer_certificate())
            .ok_or("no client certificate")?;
        let lang = call.metadata().get("lang").unwrap_or("en").to_string();
        Ok::<_, String>(format!(
            "{greeting}: {} bytes of certificate, {lang}",
            cert.as_der().len()
        ))
    })
}

#[tokio::test]
async fn a_handler_without_a_session() {
    let tls = TlsInfo::new().with_peer_certificates(vec![Certificate::from_der(vec![7u8; 300])]);
    let info = ConnectionInfo::new(TransportKind::Tls).with_tls(tls);
    let reply = TestCall::new("WhoAmI")
        .args(&["hello"])
        .metadata("lang", "fr")
        .connection(info)
        .run(&whoami())
        .await;
    assert_eq!(reply.outcome(), &Outcome::Returned);
    assert_eq!(
        reply.value::<String>().unwrap(),
        "hello: 300 bytes of certificate, fr"
    );
    assert!(reply.ended());

    // Without a certificate, the handler's error.
    let reply = TestCall::new("WhoAmI").args(&["hi"]).run(&whoami()).await;
    assert_eq!(reply.error().as_deref(), Some("no client certificate"));
    assert_eq!(
        reply.outcome(),
        &Outcome::Failed("no client certificate".into())
    );
    // Wrong arguments: the reference's message.
    let reply = TestCall::new("WhoAmI").args(&()).run(&whoami()).await;
    assert_eq!(
        reply.error().as_deref(),
        Some("fn: expected 1 params, got 0")
    );
}

#[tokio::test]
async fn unanswered_panicking_and_streaming_handlers() {
    let silent = handler_fn(|_r: Responder, _c: Call| async {});
    let reply = TestCall::new("x").args(&()).run(&silent).await;
    assert_eq!(reply.outcome(), &Outcome::Unanswered);
    assert_eq!(reply.value::<Option<u8>>().unwrap(), None);

    let panics = handler_fn(|_r: Responder, _c: Call| async { panic!("boom") });
    let reply = TestCall::new("x").args(&()).run(&panics).await;
    assert_eq!(reply.outcome(), &Outcome::Panicked("boom".into()));
    assert_eq!(reply.error().as_deref(), Some("panic: boom"));

    // A continued call that sums the values streamed to it, in CBOR.
    let sum = handler_fn(|r: Responder, mut call: Call| async move {
        let _: () = call.receive().await.unwrap();
        let mut out = r.continue_with(&"ready").await.unwrap();
        let mut total = 0i64;
        while let Ok(Some(n)) = call.receive_next::<i64>().await {
            total += n;
            out.send(&total).await.unwrap();
        }
        out.close_write().unwrap();
    });
    let reply = TestCall::new("Sum")
        .codec(Cbor)
        .args(&())
        .args(&1)
        .args(&2)
        .args(&3)
        .run(&sum)
        .await;
    assert_eq!(reply.outcome(), &Outcome::Continued);
    assert!(reply.header().unwrap().is_continued());
    assert_eq!(reply.value::<String>().unwrap(), "ready");
    // The value it continued with, then the running totals.
    let all = reply.values::<qtalk::Value>();
    assert_eq!(all.len(), 4);
    assert_eq!(&all[1..], &[1.into(), 3.into(), 6.into()][..]);
}

#[tokio::test(start_paused = true)]
async fn cancellation_and_deadlines_in_memory() {
    let waits = handler_fn(|r: Responder, call: Call| async move {
        tokio::select! {
            _ = call.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {
                let _ = r.ret(&"too late").await;
            }
        }
    });
    let start = tokio::time::Instant::now();
    let reply = TestCall::new("x")
        .args(&())
        .cancel_after(Duration::from_secs(3))
        .run(&waits)
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(reply.outcome(), &Outcome::Unanswered);

    let start = tokio::time::Instant::now();
    let reply = TestCall::new("x")
        .args(&())
        .timeout(Duration::from_secs(2))
        .run(&waits)
        .await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(reply.outcome(), &Outcome::Unanswered);
}

#[tokio::test]
async fn middleware_in_memory() {
    let auth = AuthLayer::bearer_token("authorization", ["s3cr3t"]);
    let mut service = auth.layer(HandlerService::new(whoami()));
    let (incoming, out) = TestCall::new("WhoAmI").args(&["hi"]).into_incoming();
    let outcome = service.call(incoming).await.unwrap();
    assert_eq!(
        outcome,
        Outcome::Failed("unauthenticated: no token in metadata \"authorization\"".into())
    );
    assert_eq!(
        out.response(outcome).error().as_deref(),
        Some("unauthenticated: no token in metadata \"authorization\"")
    );
}
