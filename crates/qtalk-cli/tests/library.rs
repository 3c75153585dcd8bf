//! The library part used in-process: the interop service and the check sequence over an
//! in-memory pipe, with both codecs, and a check that catches a wrong peer.

use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::{Cbor, Codec, Json};
use qtalk::rpc::{handler_fn, Call, Responder};
use qtalk_cli::interop::{self, Faults};
use qtalk_cli::{check, Failure};

fn pair() -> (qtalk_mux::Session, qtalk_mux::Session) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        qtalk_mux::Session::new(a, qtalk_mux::Config::default()),
        qtalk_mux::Session::new(b, qtalk_mux::Config::default()),
    )
}

fn reference(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("reference output");
    text.lines()
        .filter(|l| !l.contains("* Using JSON codec"))
        .map(|l| format!("{l}\n"))
        .collect()
}

async fn check_in_process(codec: Arc<dyn Codec>) -> (Result<check::Summary, Failure>, String) {
    let (checker, server) = pair();
    let faults = Faults::new();
    let _served = interop::serve(server, codec.clone(), faults.clone());
    let me = interop::serve_callbacks(checker, codec);
    let mut out = Vec::new();
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        check::run(me.caller(), &check::Options::default(), &mut out),
    )
    .await
    .expect("check finished in time");
    assert_eq!(faults.first(), None);
    (res, String::from_utf8(out).expect("utf-8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sequence_passes_in_process_cbor() {
    let (res, out) = check_in_process(Arc::new(Cbor)).await;
    let summary = res.expect("checks pass");
    assert_eq!(summary.passed, 15);
    assert_eq!(out, reference("cbor_check_output.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_sequence_passes_in_process_json() {
    let (res, out) = check_in_process(Arc::new(Json)).await;
    res.expect("checks pass");
    assert_eq!(out, reference("json_check_output.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_stops_at_the_first_difference() {
    // A peer whose Unary adds one to numbers.
    let (checker, server) = pair();
    let mux = interop::service(Faults::new());
    mux.remove("Unary");
    mux.handle(
        "Unary",
        handler_fn(|r: Responder, mut call: Call| async move {
            let v: qtalk::Value = call.receive().await.unwrap_or_default();
            let v = match v.as_i64() {
                Some(i) => qtalk::Value::Int((i + 1).into()),
                None => v,
            };
            let _ = r.ret(&v).await;
        }),
    )
    .unwrap();
    let served = qtalk::rpc::Peer::new(server, Cbor).handler(mux);
    served.respond();
    let me = interop::serve_callbacks(checker, Arc::new(Cbor));
    let mut out = Vec::new();
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        check::run(me.caller(), &check::Options::default(), &mut out),
    )
    .await
    .expect("in time");
    assert_eq!(
        res,
        Err(Failure::Check(
            "Unary(100): returned 101 instead of the value sent".into()
        ))
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "Error: test\nError: not found: /BadSelector\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_times_out_on_a_silent_peer() {
    let (checker, server) = pair();
    let mux = interop::service(Faults::new());
    mux.remove("Error");
    mux.handle(
        "Error",
        handler_fn(|_r: Responder, _call: Call| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }),
    )
    .unwrap();
    let served = qtalk::rpc::Peer::new(server, Json).handler(mux);
    served.respond();
    let me = interop::serve_callbacks(checker, Arc::new(Json));
    let options = check::Options {
        timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let mut out = Vec::new();
    let res = check::run(me.caller(), &options, &mut out).await;
    assert_eq!(
        res,
        Err(Failure::Check(
            "Error(\"test\"): no answer within 200.00ms".into()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_in_process() {
    let (checker, server) = pair();
    let _served = interop::serve(server, Arc::new(Cbor), Faults::new());
    let me = interop::serve_callbacks(checker, Arc::new(Cbor));
    let options = qtalk_cli::bench::Options {
        duration: Duration::from_millis(100),
        concurrency: 4,
        timeout: Duration::from_secs(10),
    };
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        qtalk_cli::bench::run(me.caller(), &options, "in-process"),
    )
    .await
    .expect("in time")
    .expect("bench runs");
    assert_eq!(report.bytes.bytes_sent, report.bytes.bytes_received);
    assert!(report.unary_sequential.calls > 0);
    assert_eq!(report.unary_concurrent.callers, 4);
    assert!(report.table().contains("Unary, 4 callers"));
}
