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

mod auth;
mod client;
#[cfg(feature = "metrics")]
mod metrics;

pub use auth::{Auth, AuthLayer, Principal};
pub use client::{DeadlineLayer, MetadataLayer, WithDeadline, WithMetadata};
#[cfg(feature = "metrics")]
pub use metrics::{names, Metrics, MetricsLayer, DEFAULT_MAX_SELECTORS, OTHER_SELECTOR};
