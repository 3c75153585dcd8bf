//! Client-side layers over a [`Caller`](crate::rpc::Caller)'s tower service:
//! [`MetadataLayer`] (a token on every call) and [`DeadlineLayer`] (a timeout on every call,
//! sent to the responder).

use std::task::{Context, Poll};
use std::time::Duration;

use crate::rpc::{Metadata, Outgoing};

/// A tower layer that adds metadata entries to every outgoing call that does not set them
/// itself (e.g. an `authorization` token).
///
/// ```
/// use qtalk::rpc::layer::MetadataLayer;
/// let token = MetadataLayer::new([("authorization", "Bearer s3cr3t")]);
/// # let _ = token;
/// ```
#[derive(Clone, Debug)]
pub struct MetadataLayer {
    entries: Metadata,
}

impl MetadataLayer {
    /// A layer adding `entries`.
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> MetadataLayer {
        MetadataLayer {
            entries: entries.into_iter().collect(),
        }
    }
}

impl<S> tower_layer::Layer<S> for MetadataLayer {
    type Service = WithMetadata<S>;

    fn layer(&self, inner: S) -> WithMetadata<S> {
        WithMetadata {
            inner,
            entries: self.entries.clone(),
        }
    }
}

/// The service of [`MetadataLayer`].
#[derive(Clone, Debug)]
pub struct WithMetadata<S> {
    inner: S,
    entries: Metadata,
}

impl<S: tower_service::Service<Outgoing>> tower_service::Service<Outgoing> for WithMetadata<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Outgoing) -> S::Future {
        let meta = req.context_mut().metadata_mut();
        for (k, v) in self.entries.iter() {
            if meta.get(k).is_none() {
                meta.insert(k, v);
            }
        }
        self.inner.call(req)
    }
}

/// A tower layer that gives every outgoing call a deadline `timeout` after it starts (or
/// keeps the call's own, when earlier). Unlike tower's `Timeout`, the deadline travels with
/// the call, so the responder learns it ([`Call::deadline`](crate::rpc::Call::deadline)).
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    /// A layer giving each call `timeout`.
    pub fn new(timeout: Duration) -> DeadlineLayer {
        DeadlineLayer { timeout }
    }
}

impl<S> tower_layer::Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> WithDeadline<S> {
        WithDeadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct WithDeadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S: tower_service::Service<Outgoing>> tower_service::Service<Outgoing> for WithDeadline<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Outgoing) -> S::Future {
        let ctx = std::mem::take(req.context_mut()).with_timeout(self.timeout);
        *req.context_mut() = ctx;
        self.inner.call(req)
    }
}
