//! [`MetricsLayer`]: calls, errors and latency per selector, through the `metrics` facade.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};

use ::metrics::{Counter, Histogram, SharedString};
use tokio::time::Instant;

use crate::rpc::handler::BoxFuture;
use crate::rpc::{Incoming, Outcome};

/// Names of the series [`MetricsLayer`] records.
pub mod names {
    /// Counter of calls served, labelled `selector` and `outcome` (`ok`, `error`,
    /// `continued`, `detached`, `unanswered`, `panic`: [`Outcome::label`](crate::rpc::Outcome::label)).
    pub const CALLS: &str = "qtalk_rpc_calls_total";
    /// Counter of calls answered with an error (or a panic), labelled `selector`.
    pub const ERRORS: &str = "qtalk_rpc_errors_total";
    /// Histogram of the time from a call's header to its handler's end, in seconds, labelled
    /// `selector`.
    pub const DURATION: &str = "qtalk_rpc_call_duration_seconds";
}

/// The selector label of the calls past [`MetricsLayer::max_selectors`] distinct selectors.
pub const OTHER_SELECTOR: &str = "(other)";

/// Distinct selectors labelled by default (see [`MetricsLayer::max_selectors`]).
pub const DEFAULT_MAX_SELECTORS: usize = 256;

/// A tower layer that records, for every call, its outcome and how long its handler took,
/// per selector, through the [`metrics`] facade: counters [`names::CALLS`] and
/// [`names::ERRORS`], histogram [`names::DURATION`]. Install a recorder (a Prometheus
/// exporter, ...) before serving: the series are registered on a selector's first call.
///
/// Selectors come from callers, so the set of labels is bounded: past
/// [`max_selectors`](MetricsLayer::max_selectors) distinct selectors (256 by default), calls
/// are recorded under [`OTHER_SELECTOR`]. Put the layer inside an authentication layer so
/// that anonymous callers do not fill it.
///
/// ```
/// use qtalk::rpc::layer::{AuthLayer, MetricsLayer};
/// use qtalk::rpc::{HandlerService, RespondMux, ServiceHandler};
/// use tower_layer::Layer;
/// let service = AuthLayer::bearer_token("authorization", ["secret"])
///     .layer(MetricsLayer::new().layer(HandlerService::new(RespondMux::new())));
/// let handler = ServiceHandler::new(service);
/// # let _ = handler;
/// ```
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    max_selectors: usize,
    series: RwLock<HashMap<Arc<str>, Arc<Series>>>,
    other: OnceLock<Arc<Series>>,
}

/// The handles of one selector's series, registered once.
#[derive(Debug)]
struct Series {
    selector: SharedString,
    /// One counter per outcome label, registered on first use.
    calls: [OnceLock<Counter>; 6],
    errors: Counter,
    duration: Histogram,
}

fn outcome_index(o: &Outcome) -> usize {
    match o {
        Outcome::Returned => 0,
        Outcome::Failed(_) => 1,
        Outcome::Continued => 2,
        Outcome::Detached => 3,
        Outcome::Unanswered => 4,
        Outcome::Panicked(_) => 5,
    }
}

impl Series {
    fn new(selector: &str) -> Series {
        let selector = SharedString::from(selector.to_string());
        Series {
            errors: ::metrics::counter!(names::ERRORS, "selector" => selector.clone()),
            duration: ::metrics::histogram!(names::DURATION, "selector" => selector.clone()),
            calls: Default::default(),
            selector,
        }
    }

    fn record(&self, outcome: &Outcome, seconds: f64) {
        let i = outcome_index(outcome);
        self.calls[i]
            .get_or_init(|| {
                ::metrics::counter!(
                    names::CALLS,
                    "selector" => self.selector.clone(),
                    "outcome" => outcome.label()
                )
            })
            .increment(1);
        if outcome.is_error() {
            self.errors.increment(1);
        }
        self.duration.record(seconds);
    }
}

impl Default for MetricsLayer {
    fn default() -> Self {
        MetricsLayer::new()
    }
}

impl MetricsLayer {
    /// A layer labelling up to [`DEFAULT_MAX_SELECTORS`] selectors.
    pub fn new() -> MetricsLayer {
        MetricsLayer::with_max_selectors(DEFAULT_MAX_SELECTORS)
    }

    /// A layer labelling up to `max` distinct selectors (the rest are [`OTHER_SELECTOR`]).
    pub fn with_max_selectors(max: usize) -> MetricsLayer {
        MetricsLayer {
            state: Arc::new(State {
                max_selectors: max,
                series: RwLock::new(HashMap::new()),
                other: OnceLock::new(),
            }),
        }
    }

    /// Distinct selectors labelled.
    pub fn max_selectors(&self) -> usize {
        self.state.max_selectors
    }
}

impl State {
    fn series(&self, selector: &str) -> Arc<Series> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(selector)
        {
            return s.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(selector) {
            return s.clone();
        }
        if map.len() >= self.max_selectors {
            return self
                .other
                .get_or_init(|| Arc::new(Series::new(OTHER_SELECTOR)))
                .clone();
        }
        let s = Arc::new(Series::new(selector));
        map.insert(selector.into(), s.clone());
        s
    }
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> tower_service::Service<Incoming> for Metrics<S>
where
    S: tower_service::Service<Incoming, Response = Outcome>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = BoxFuture<Result<Outcome, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Incoming) -> Self::Future {
        let series = self.state.series(req.selector());
        let start = Instant::now();
        let run = self.inner.call(req);
        Box::pin(async move {
            let result = run.await;
            let seconds = start.elapsed().as_secs_f64();
            match &result {
                Ok(outcome) => series.record(outcome, seconds),
                // The call failed in a layer below (a timeout): an error.
                Err(_) => series.record(&Outcome::Failed(String::new()), seconds),
            }
            result
        })
    }
}
