//! Middleware on both sides, composed as tower layers: the authentication layer refuses a
//! call without running its handler; the metrics layer records outcomes and latency; tower's
//! concurrency limit works on a server; client layers add metadata, a deadline and retries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use qtalk::codec::Json;
use qtalk::mux::{Config, Session};
use qtalk::rpc::layer::{AuthLayer, DeadlineLayer, MetadataLayer, MetricsLayer, Principal};
use qtalk::rpc::{
    func, Call, Caller, Error, HandlerService, Outgoing, RespondMux, Server, ServiceHandler,
};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// `server` on a TCP listener; a caller connected to it.
async fn serve_tcp(server: &Server) -> Caller {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server.clone();
    tokio::spawn(async move { server.serve(listener).await });
    let session = qtalk::mux::transport::connect_tcp(addr, Config::default())
        .await
        .unwrap();
    Caller::new(session, Json)
}

/// A mux whose `Upper` counts its runs and answers the principal it was called by.
fn counted_upper(runs: Arc<AtomicUsize>) -> RespondMux {
    let mux = RespondMux::new();
    mux.handle(
        "Upper",
        func(move |call: Call, (s,): (String,)| {
            runs.fetch_add(1, Ordering::SeqCst);
            let who = match call.extensions().get::<Principal>() {
                Some(Principal::Token(i)) => format!("token {i}"),
                other => format!("{other:?}"),
            };
            async move { Ok::<_, String>(format!("{} ({who})", s.to_uppercase())) }
        }),
    )
    .unwrap();
    mux
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_refuses_without_running_the_handler() {
    let runs = Arc::new(AtomicUsize::new(0));
    let service = AuthLayer::bearer_token("authorization", ["secret", "other"])
        .layer(HandlerService::new(counted_upper(runs.clone())));
    let server = Server::new(ServiceHandler::new(service), Json);
    let caller = serve_tcp(&server).await;

    let err = caller
        .call::<_, String>("Upper", &["hi"])
        .await
        .unwrap_err();
    assert_eq!(
        err.remote_message(),
        Some("unauthenticated: no token in metadata \"authorization\"")
    );
    let wrong = caller.clone().with_metadata("authorization", "guess");
    let err = wrong.call::<_, String>("Upper", &["hi"]).await.unwrap_err();
    assert_eq!(
        err.remote_message(),
        Some("unauthenticated: invalid token in metadata \"authorization\"")
    );
    // An unknown selector is refused too (no routing for strangers).
    let err = caller.call::<_, String>("Nope", &()).await.unwrap_err();
    assert!(err.remote_message().unwrap().starts_with("unauthenticated"));
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler never ran");

    let authorized = caller
        .clone()
        .with_metadata("authorization", "Bearer other");
    let v: String = authorized.call("Upper", &["hi"]).await.unwrap();
    assert_eq!(v, "HI (token 1)");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// A recorder for the `metrics` facade, as an exporter would install one.

#[derive(Default)]
struct Recorded {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Mutex<Vec<f64>>>>>,
}

struct Counter(Arc<AtomicU64>);
impl metrics::CounterFn for Counter {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

struct Histogram(Arc<Mutex<Vec<f64>>>);
impl metrics::HistogramFn for Histogram {
    fn record(&self, v: f64) {
        self.0.lock().unwrap().push(v);
    }
}

/// `name{label=value,...}` with the labels in their order.
fn key_text(key: &metrics::Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct TestRecorder(Arc<Recorded>);

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut map = self.0.counters.lock().unwrap();
        let c = map.entry(key_text(key)).or_default().clone();
        metrics::Counter::from_arc(Arc::new(Counter(c)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let mut map = self.0.histograms.lock().unwrap();
        let h = map.entry(key_text(key)).or_default().clone();
        metrics::Histogram::from_arc(Arc::new(Histogram(h)))
    }
}

/// The recorder of this test binary (installed once).
fn recorded() -> Arc<Recorded> {
    static R: OnceLock<Arc<Recorded>> = OnceLock::new();
    R.get_or_init(|| {
        let r = Arc::new(Recorded::default());
        metrics::set_global_recorder(TestRecorder(r.clone())).unwrap();
        r
    })
    .clone()
}

fn counter(r: &Recorded, key: &str) -> u64 {
    r.counters
        .lock()
        .unwrap()
        .get(key)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

#[tokio::test(start_paused = true)]
async fn metrics_record_outcome_and_latency_per_selector() {
    let recorded = recorded();
    let mux = RespondMux::new();
    mux.handle(
        "m.Slow",
        func(|_c: Call, (): ()| async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            Ok::<_, String>("done")
        }),
    )
    .unwrap();
    mux.handle(
        "m.Fail",
        func(|_c: Call, (): ()| async { Err::<(), _>("broken") }),
    )
    .unwrap();
    // At most two selectors labelled: the third distinct one is "(other)".
    let metrics = MetricsLayer::with_max_selectors(2);
    let server = Server::new(
        ServiceHandler::new(metrics.layer(HandlerService::new(mux))),
        Json,
    );
    // In memory, in paused time: the latency is exactly the handler's.
    let (a, b) = tokio::io::duplex(64 * 1024);
    server.respond(Session::new(b, Config::default()));
    let caller = Caller::new(Session::new(a, Config::default()), Json);

    let v: String = caller.call("m.Slow", &()).await.unwrap();
    assert_eq!(v, "done");
    assert!(caller.call::<_, ()>("m.Fail", &()).await.is_err());
    assert!(caller.call::<_, ()>("m.Nope", &()).await.is_err());

    let r = &recorded;
    assert_eq!(
        counter(r, "qtalk_rpc_calls_total{selector=/m/Slow,outcome=ok}"),
        1
    );
    assert_eq!(
        counter(r, "qtalk_rpc_calls_total{selector=/m/Fail,outcome=error}"),
        1
    );
    assert_eq!(counter(r, "qtalk_rpc_errors_total{selector=/m/Fail}"), 1);
    assert_eq!(counter(r, "qtalk_rpc_errors_total{selector=/m/Slow}"), 0);
    assert_eq!(
        counter(r, "qtalk_rpc_calls_total{selector=(other),outcome=error}"),
        1,
        "the third selector is not labelled"
    );
    let h = r.histograms.lock().unwrap();
    let slow = h["qtalk_rpc_call_duration_seconds{selector=/m/Slow}"]
        .lock()
        .unwrap()
        .clone();
    assert_eq!(slow, vec![0.25]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tower_concurrency_limit_works_on_a_server() {
    let running = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let mux = RespondMux::new();
    let (r, g) = (running.clone(), go.clone());
    mux.handle(
        "Hold",
        func(move |_c: Call, (): ()| {
            let (running, go, started) = (r.clone(), g.clone(), started_tx.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                started.send(now).unwrap();
                go.acquire().await.unwrap().forget();
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, String>("done")
            }
        }),
    )
    .unwrap();
    let service = ServiceBuilder::new()
        .concurrency_limit(2)
        .service(HandlerService::new(mux));
    let server = Server::new(ServiceHandler::new(service), Json);
    let caller = serve_tcp(&server).await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let caller = caller.clone();
            tokio::spawn(async move { caller.call::<_, String>("Hold", &()).await })
        })
        .collect();
    // Two run; the third waits for a permit (its handler has not started).
    assert!(within(5, "first", started.recv()).await.unwrap() <= 2);
    assert!(within(5, "second", started.recv()).await.unwrap() <= 2);
    // The third is a call the server holds (its header arrived), waiting in the layer.
    within(5, "third call held", async {
        while server.calls_in_flight() < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(started.try_recv().is_err());
    go.add_permits(1);
    assert_eq!(within(5, "third", started.recv()).await.unwrap(), 2);
    go.add_permits(2);
    for c in calls {
        assert_eq!(within(5, "calls end", c).await.unwrap().unwrap(), "done");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tower_timeout_answers_with_its_error() {
    let mux = RespondMux::new();
    mux.handle(
        "Never",
        func(|_c: Call, (): ()| async {
            std::future::pending::<()>().await;
            Ok::<_, String>(())
        }),
    )
    .unwrap();
    let service = ServiceBuilder::new()
        .timeout(Duration::from_millis(50))
        .service(HandlerService::new(mux));
    let server = Server::new(ServiceHandler::new(service), Json);
    let caller = serve_tcp(&server).await;
    let err = within(5, "call", caller.call::<_, ()>("Never", &()))
        .await
        .unwrap_err();
    assert_eq!(err.remote_message(), Some("request timed out"));
}

/// A retry policy for the client side: retries `remote: transient` once.
#[derive(Clone)]
struct RetryTransient(usize);

impl tower::retry::Policy<Outgoing, qtalk::rpc::Response, Error> for RetryTransient {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Outgoing,
        result: &mut Result<qtalk::rpc::Response, Error>,
    ) -> Option<Self::Future> {
        match result {
            Err(e) if e.remote_message() == Some("transient") && self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Outgoing) -> Option<Outgoing> {
        Some(req.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_layers_add_metadata_a_deadline_and_retries() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let mux = RespondMux::new();
    let a = attempts.clone();
    mux.handle(
        "Flaky",
        func(move |call: Call, (): ()| {
            let n = a.fetch_add(1, Ordering::SeqCst);
            let token = call.metadata().get("authorization").map(String::from);
            let left = call.remaining();
            async move {
                if n == 0 {
                    return Err("transient".to_string());
                }
                let left = left.ok_or("no deadline")?;
                Ok((
                    token,
                    left <= Duration::from_secs(5) && left > Duration::from_secs(4),
                ))
            }
        }),
    )
    .unwrap();
    let server = Server::new(mux, Json);
    let caller = serve_tcp(&server).await;
    let mut client = ServiceBuilder::new()
        .retry(RetryTransient(1))
        .layer(MetadataLayer::new([("authorization", "Bearer t")]))
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .service(caller.clone());
    let req = caller.prepare("Flaky", &()).unwrap();
    let mut resp = client.ready().await.unwrap().call(req).await.unwrap();
    let (token, deadline_ok): (Option<String>, bool) = resp.receive().await.unwrap();
    assert_eq!(token.as_deref(), Some("Bearer t"));
    assert!(deadline_ok, "the responder saw the 5 s deadline");
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "retried once");
}
