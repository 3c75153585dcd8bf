//! Ready-made tower layers.
//!
//! Server side, over a [`HandlerService`](crate::rpc::HandlerService) (see
//! [`ServiceHandler`](crate::rpc::ServiceHandler)):
//! - [`AuthLayer`]: refuses calls from callers it does not accept (a token in metadata, a
//!   client certificate, a Unix user, a rule of yours) before any handler runs;
//! - [`MetricsLayer`] (feature `metrics`): calls, errors and latency per selector through
//!   the `metrics` facade.
//!
//! Client side, over a [`Caller`](crate::rpc::Caller):
//! - [`MetadataLayer`]: metadata (a token) on every call;
//! - [`DeadlineLayer`]: a deadline on every call, sent to the responder.
//!
//! tower's own layers fit too: `ConcurrencyLimitLayer`, `RateLimitLayer`, `TimeoutLayer`,
//! `LoadShedLayer` on the server side (a refusal or time-out answers the call with the
//! error's text); `RetryLayer` and `TimeoutLayer` on the client side.

/// tower's `Layer` trait (from `tower-layer` 0.3), so that `layer.layer(service)` needs no
/// import of tower; and `Service` (from `tower-service` 0.3), the trait of
/// [`HandlerService`](crate::rpc::HandlerService) and [`Caller`](crate::rpc::Caller). Both
/// are tower's stable trait crates; a major release of either is a major release of this
/// crate.
pub use tower_layer::Layer;
pub use tower_service::Service;

mod auth;
mod client;
#[cfg(feature = "metrics")]
mod metrics;

pub use auth::{Auth, AuthFuture, AuthLayer, Principal};
pub use client::{DeadlineLayer, MetadataLayer, WithDeadline, WithMetadata};
#[cfg(feature = "metrics")]
pub use metrics::{
    names, Metrics, MetricsFuture, MetricsLayer, DEFAULT_MAX_SELECTORS, OTHER_SELECTOR,
};
