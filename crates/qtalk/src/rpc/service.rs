//! Handlers and callers as tower services, so that middleware composes as tower layers.
//!
//! - Responding: a call on its way to a handler is an [`Incoming`]; a handler is a
//!   `Service<Incoming, Response = Outcome>` through [`HandlerService`], and any such
//!   service (a handler under layers) is a [`Handler`] again through [`ServiceHandler`].
//!   A layer sees the selector, the metadata and the connection before dispatch, can
//!   refuse ([`Incoming::refuse`]: the handler never runs), and sees the [`Outcome`] after.
//! - Calling: a [`Caller`] is a `Service<Outgoing, Response = Response>`; layers add
//!   metadata, deadlines, retries.
//!
//! Streaming and continued calls pass through unchanged: the request carries the whole
//! call (its values still to be read, its channel to continue on), and the response is the
//! outcome (or, calling, the response whose values are still to be read). Layers that would
//! need to see each streamed value or byte (per-message compression, per-message metrics)
//! do not fit tower's request/response shape; see ARCHITECTURE.md.

use std::convert::Infallible;
use std::fmt::Display;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Serialize;

use crate::codec::Codec;
use crate::rpc::handler::BoxFuture;
use crate::rpc::responder::respond_fallback;
use crate::rpc::{Call, CallContext, Caller, Error, Handler, Outcome, Responder, Response};

/// A call on its way to its handler: the [`Call`] and its [`Responder`], as one tower request.
#[derive(Debug)]
pub struct Incoming {
    responder: Responder,
    call: Call,
}

impl Incoming {
    /// The request of a call.
    pub fn new(responder: Responder, call: Call) -> Incoming {
        Incoming { responder, call }
    }

    /// The call (selector, metadata and deadline, connection, extensions).
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The call, to attach extensions for the handler.
    pub fn call_mut(&mut self) -> &mut Call {
        &mut self.call
    }

    /// The call's normalized selector.
    pub fn selector(&self) -> &str {
        self.call.selector()
    }

    /// The call's metadata and deadline.
    pub fn context(&self) -> &CallContext {
        self.call.context()
    }

    /// The connection the call came over.
    pub fn connection(&self) -> &qtalk_mux::ConnectionInfo {
        self.call.connection()
    }

    /// The responder and the call, to run a handler.
    pub fn into_parts(self) -> (Responder, Call) {
        (self.responder, self.call)
    }

    /// Answers the call with an error without running any handler (the caller reads
    /// `remote: <message>`), and returns the outcome to report.
    pub async fn refuse(self, message: impl Display) -> Outcome {
        let message = message.to_string();
        let _ = self.responder.error(&message).await;
        Outcome::Failed(message)
    }
}

/// A [`Handler`] as a tower service of [`Incoming`] calls, whose response is the call's
/// [`Outcome`] once the handler is done: the innermost service of a server's middleware.
/// A panicking handler is answered `panic: <message>` here and reported as
/// [`Outcome::Panicked`].
#[derive(Clone)]
pub struct HandlerService {
    handler: Arc<dyn Handler>,
}

impl std::fmt::Debug for HandlerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerService").finish_non_exhaustive()
    }
}

impl HandlerService {
    /// The service of `handler` (typically a [`RespondMux`](crate::rpc::RespondMux)).
    pub fn new(handler: impl Handler) -> HandlerService {
        HandlerService {
            handler: Arc::new(handler),
        }
    }

    /// The service of a shared handler.
    pub fn from_arc(handler: Arc<dyn Handler>) -> HandlerService {
        HandlerService { handler }
    }
}

impl tower_service::Service<Incoming> for HandlerService {
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<Result<Outcome, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Incoming) -> Self::Future {
        let (responder, call) = req.into_parts();
        let slot = responder.slot.clone();
        let codec = responder.codec.clone();
        let run = self.handler.respond(responder, call);
        Box::pin(async move {
            match AssertUnwindSafe(run).catch_unwind().await {
                Ok(()) => Ok(slot.outcome()),
                Err(panic) => {
                    let msg = panic_message(&panic);
                    tracing::debug!(panic = %msg, "rpc: handler panicked");
                    if let Some(w) = slot.take_writer() {
                        respond_fallback(w, &*codec, Some(format!("panic: {msg}"))).await;
                    }
                    Ok(Outcome::Panicked(msg))
                }
            }
        })
    }
}

pub(crate) fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_string()
    }
}

/// A tower service of [`Incoming`] calls (a handler under middleware) as a [`Handler`], to
/// give to a [`Server`](crate::rpc::Server) or a [`Peer`](crate::rpc::Peer).
///
/// Each call clones the service (cheap for tower's layers, which share their state) and
/// waits until it is ready: a concurrency limit makes calls wait there, as the server's own
/// limit does. A service error (an overloaded or timed-out layer) answers the call with the
/// error's text, unless it was answered already.
///
/// ```
/// use qtalk::rpc::{func, Call, HandlerService, RespondMux, Server, ServiceHandler};
/// use qtalk::rpc::layer::AuthLayer;
/// use tower_layer::Layer;
///
/// let mux = RespondMux::new();
/// mux.handle("Upper", func(|_c: Call, (s,): (String,)| async move {
///     Ok::<_, String>(s.to_uppercase())
/// })).unwrap();
/// let auth = AuthLayer::bearer_token("authorization", ["secret"]);
/// let server = Server::new(ServiceHandler::new(auth.layer(HandlerService::new(mux))), qtalk::codec::Json);
/// # let _ = server;
/// ```
#[derive(Clone, Debug)]
pub struct ServiceHandler<S> {
    service: S,
}

impl<S> ServiceHandler<S> {
    /// The handler of `service`.
    pub fn new(service: S) -> ServiceHandler<S> {
        ServiceHandler { service }
    }
}

impl<S> Handler for ServiceHandler<S>
where
    S: tower_service::Service<Incoming, Response = Outcome> + Clone + Send + Sync + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        let mut service = self.service.clone();
        let slot = responder.slot.clone();
        let codec = responder.codec.clone();
        Box::pin(async move {
            let result = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
                Ok(()) => service.call(Incoming::new(responder, call)).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "rpc: middleware failed the call");
                if let Some(w) = slot.take_writer() {
                    respond_fallback(w, &*codec, Some(e.to_string())).await;
                }
            }
        })
    }
}

/// One call to make, as a tower request for a [`Caller`]: the selector, the encoded
/// arguments and the [`CallContext`]. Cheap to clone (for retries). Made by
/// [`Caller::prepare`].
#[derive(Clone, Debug)]
pub struct Outgoing {
    selector: Arc<str>,
    args: Bytes,
    context: CallContext,
    codec: &'static str,
}

impl Outgoing {
    pub(crate) fn new(selector: &str, args: Bytes, codec: &dyn Codec) -> Outgoing {
        Outgoing {
            selector: selector.into(),
            args,
            context: CallContext::new(),
            codec: codec.name(),
        }
    }

    /// The selector to call.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The call's metadata and deadline.
    pub fn context(&self) -> &CallContext {
        &self.context
    }

    /// The call's metadata and deadline, to change (e.g. add a token).
    pub fn context_mut(&mut self) -> &mut CallContext {
        &mut self.context
    }

    /// The arguments as encoded (one rpc frame's payload).
    pub fn args(&self) -> &Bytes {
        &self.args
    }

    pub(crate) fn codec_name(&self) -> &'static str {
        self.codec
    }
}

impl Caller {
    /// A request for [`Caller`]'s tower service: `selector` with `args`, encoded now.
    pub fn prepare<A: Serialize + ?Sized>(
        &self,
        selector: &str,
        args: &A,
    ) -> Result<Outgoing, Error> {
        let mut buf = bytes::BytesMut::new();
        crate::codec::encode(&**self.codec(), args, &mut buf)?;
        Ok(Outgoing::new(selector, buf.freeze(), &**self.codec()))
    }
}

impl tower_service::Service<Outgoing> for Caller {
    type Response = Response;
    type Error = Error;
    type Future = BoxFuture<Result<Response, Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    /// Makes the call with the request's context (and this caller's defaults), and returns
    /// the response once its header arrived.
    fn call(&mut self, req: Outgoing) -> Self::Future {
        let caller = self.clone();
        Box::pin(async move { caller.call_outgoing(req).await })
    }
}
