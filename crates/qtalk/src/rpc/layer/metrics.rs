//! [`MetricsLayer`]: calls, errors and latency per selector, through the `metrics` facade.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};

use ::metrics::{Counter, Histogram, SharedString};
use tokio::time::Instant;

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
    /// Tells layers apart in the per-thread caches.
    id: usize,
    max_selectors: usize,
    series: RwLock<HashMap<Arc<str>, Arc<Series>, BuildHasherDefault<Fnv>>>,
    other: OnceLock<Arc<Series>>,
}

/// FNV-1a: a selector is hashed on every call, and SipHash showed in profiles. The map holds
/// at most `max_selectors` entries, so colliding selectors cost a bounded probe at worst.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Ids of the [`MetricsLayer`]s made so far.
static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Layers whose series a thread keeps copies of (the oldest goes first).
const LAYERS_PER_THREAD: usize = 8;

type LocalSeries = HashMap<Box<str>, Arc<Series>, BuildHasherDefault<Fnv>>;

thread_local! {
    /// Per thread and layer: copies of the series handles, so that the reference count a
    /// call takes of its series stays on its thread instead of bouncing between cores.
    static LOCAL: std::cell::RefCell<Vec<(usize, LocalSeries)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The handles of one selector's series, registered once.
#[derive(Clone, Debug)]
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
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                max_selectors: max,
                series: RwLock::new(HashMap::default()),
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
    /// The series of `selector`: this thread's copy, made from the shared one at first.
    fn series(&self, selector: &str) -> Arc<Series> {
        let local = LOCAL.try_with(|local| {
            let mut local = local.try_borrow_mut().ok()?;
            let i = match local.iter().position(|(id, _)| *id == self.id) {
                Some(i) => i,
                None => {
                    if local.len() >= LAYERS_PER_THREAD {
                        local.remove(0);
                    }
                    local.push((self.id, HashMap::default()));
                    local.len() - 1
                }
            };
            let map = &mut local[i].1;
            if let Some(s) = map.get(selector) {
                return Some(s.clone());
            }
            let shared = self.shared_series(selector);
            // Copies of labelled selectors only: "(other)" stays shared (and no unlabelled
            // selector takes room here).
            let other = self.other.get().is_some_and(|o| Arc::ptr_eq(o, &shared));
            if !other && map.len() < self.max_selectors {
                let copy = Arc::new((*shared).clone());
                map.insert(selector.into(), copy.clone());
                return Some(copy);
            }
            Some(shared)
        });
        match local {
            Ok(Some(s)) => s,
            _ => self.shared_series(selector),
        }
    }

    /// The series of `selector` shared by every thread (registered on first use).
    fn shared_series(&self, selector: &str) -> Arc<Series> {
        {
            let map = self.series.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map.get(selector) {
                return s.clone();
            }
            // Full: the rest are "(other)", without taking the write lock.
            if map.len() >= self.max_selectors {
                drop(map);
                return self.other();
            }
        }
        let mut map = self.series.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(selector) {
            return s.clone();
        }
        if map.len() >= self.max_selectors {
            return self.other();
        }
        let s = Arc::new(Series::new(selector));
        map.insert(selector.into(), s.clone());
        s
    }

    fn other(&self) -> Arc<Series> {
        self.other
            .get_or_init(|| Arc::new(Series::new(OTHER_SELECTOR)))
            .clone()
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
{
    type Response = Outcome;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Incoming) -> Self::Future {
        let series = self.state.series(req.selector());
        MetricsFuture {
            inner: self.inner.call(req),
            series,
            start: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Metrics`]: the inner service's, recorded when it completes.
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        series: Arc<Series>,
        start: Instant,
    }
}

impl<F, E> std::future::Future for MetricsFuture<F>
where
    F: std::future::Future<Output = Result<Outcome, E>>,
{
    type Output = Result<Outcome, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let seconds = this.start.elapsed().as_secs_f64();
        match &result {
            Ok(outcome) => this.series.record(outcome, seconds),
            // The call failed in a layer below (a timeout): an error.
            Err(_) => this.series.record(&Outcome::Failed(String::new()), seconds),
        }
        Poll::Ready(result)
    }
}
