//! `ours-layers`: the `ours-cbor` echo service behind the authentication and metrics layers,
//! with a recorder installed as an exporter would (atomic counters, a bucketed histogram), and
//! a client that sends the token in every call's metadata.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use qtalk::rpc::layer::{AuthLayer, Layer, MetricsLayer};
use qtalk::rpc::{HandlerService, Server, ServiceHandler};

/// The token the client sends and the server accepts.
pub const TOKEN: &str = "bench-token";

/// A counter: one atomic.
struct Count(AtomicU64);

impl metrics::CounterFn for Count {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    fn absolute(&self, v: u64) {
        self.0.fetch_max(v, Ordering::Relaxed);
    }
}

/// A histogram as exporters keep one: a count per power-of-two bucket of microseconds, and a
/// sum.
struct Buckets {
    counts: [AtomicU64; 32],
    sum_ns: AtomicU64,
}

impl metrics::HistogramFn for Buckets {
    fn record(&self, seconds: f64) {
        let us = (seconds * 1e6) as u64;
        let i = (64 - us.leading_zeros() as usize).min(31);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }
}

struct Recorder;

impl metrics::Recorder for Recorder {
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
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(Count(AtomicU64::new(0))))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(Arc::new(Buckets {
            counts: Default::default(),
            sum_ns: AtomicU64::new(0),
        }))
    }
}

/// Serves the echo service behind both layers.
pub async fn serve(listener: qtalk::mux::Listener) -> std::io::Result<()> {
    let _ = metrics::set_global_recorder(Recorder);
    let service = AuthLayer::bearer_token("authorization", [TOKEN])
        .layer(MetricsLayer::new().layer(HandlerService::new(crate::ours::service())));
    let server = Server::new(ServiceHandler::new(service), crate::ours::codec("cbor"));
    server.serve(listener).await
}
