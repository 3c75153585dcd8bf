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

use std::any::Any;
use std::convert::Infallible;
use std::fmt::Display;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    type Future = HandlerFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Incoming) -> HandlerFuture {
        let (responder, call) = req.into_parts();
        let slot = responder.slot.clone();
        let run = self.handler.respond(responder, call);
        HandlerFuture {
            state: Running::Handler {
                run: AssertUnwindSafe(run).catch_unwind(),
                slot,
            },
        }
    }
}

/// The future of [`HandlerService`]: the handler, then (only if it panicked) the answer
/// for it. No allocation of its own.
pub struct HandlerFuture {
    state: Running,
}

enum Running {
    Handler {
        run: futures_util::future::CatchUnwind<AssertUnwindSafe<BoxFuture<()>>>,
        slot: crate::rpc::responder::Slot,
    },
    Answering {
        answer: BoxFuture<()>,
        panic: Option<String>,
    },
    Done,
}

impl std::fmt::Debug for HandlerFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerFuture").finish_non_exhaustive()
    }
}

impl std::future::Future for HandlerFuture {
    type Output = Result<Outcome, Infallible>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                Running::Handler { run, slot } => {
                    match std::task::ready!(std::pin::Pin::new(run).poll(cx)) {
                        Ok(()) => {
                            let outcome = slot.outcome();
                            self.state = Running::Done;
                            return Poll::Ready(Ok(outcome));
                        }
                        Err(panic) => {
                            let msg = panic_message(&panic);
                            tracing::debug!(panic = %msg, "rpc: handler panicked");
                            let answer: BoxFuture<()> = match slot.take_writer() {
                                Some(w) => {
                                    let codec = slot.codec.clone();
                                    let text = format!("panic: {msg}");
                                    Box::pin(async move {
                                        respond_fallback(w, &*codec, Some(text)).await
                                    })
                                }
                                None => Box::pin(std::future::ready(())),
                            };
                            self.state = Running::Answering {
                                answer,
                                panic: Some(msg),
                            };
                        }
                    }
                }
                Running::Answering { answer, panic } => {
                    std::task::ready!(answer.as_mut().poll(cx));
                    let msg = panic.take().unwrap_or_default();
                    self.state = Running::Done;
                    return Poll::Ready(Ok(Outcome::Panicked(msg)));
                }
                Running::Done => panic!("HandlerFuture polled after completion"),
            }
        }
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
    /// Tells this handler's clones apart in the per-thread spares.
    id: usize,
}

impl<S> ServiceHandler<S> {
    /// The handler of `service`.
    pub fn new(service: S) -> ServiceHandler<S> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        ServiceHandler {
            service,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Clones of services kept per thread, by [`ServiceHandler`] id, for the next call: cloning
/// a layered service per call touches the reference counts of every layer's shared state,
/// which bounce between the cores serving calls. A clone is used by one call at a time (its
/// readiness is never shared or abandoned) and comes back once the call was dispatched.
const SPARES_PER_THREAD: usize = 8;

thread_local! {
    static SPARES: std::cell::RefCell<Vec<(usize, Box<dyn Any + Send>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// This thread's spare clone of handler `id`'s service, or a fresh one.
fn take_spare<S: Clone + Send + 'static>(id: usize, service: &S) -> Box<S> {
    let spare = SPARES
        .try_with(|spares| {
            let mut spares = spares.try_borrow_mut().ok()?;
            let i = spares.iter().position(|(k, _)| *k == id)?;
            spares.swap_remove(i).1.downcast::<S>().ok()
        })
        .ok()
        .flatten();
    spare.unwrap_or_else(|| Box::new(service.clone()))
}

/// Keeps `service` as a spare of this thread, unless it has one for `id` already (the
/// oldest of a full list goes).
fn put_spare<S: Send + 'static>(id: usize, service: Box<S>) {
    let _ = SPARES.try_with(|spares| {
        let Ok(mut spares) = spares.try_borrow_mut() else {
            return;
        };
        if spares.iter().any(|(k, _)| *k == id) {
            return;
        }
        if spares.len() >= SPARES_PER_THREAD {
            spares.remove(0);
        }
        spares.push((id, service));
    });
}

impl<S> Handler for ServiceHandler<S>
where
    S: tower_service::Service<Incoming, Response = Outcome> + Clone + Send + Sync + 'static,
    S::Error: Display + Send,
    S::Future: Send + 'static,
{
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        let id = self.id;
        let mut service = take_spare(id, &self.service);
        let slot = responder.slot.clone();
        // Most services are ready at once: asked without a waker first, the call is
        // dispatched here, and only the service's future is boxed (the call is not copied
        // into a box of its own). A service that is not ready is asked again below, with
        // the task's waker, which replaces this one (tower's contract).
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Ok(())) = service.poll_ready(&mut cx) {
            let dispatched = service.call(Incoming::new(responder, call));
            put_spare(id, service);
            return Box::pin(async move {
                if let Err(e) = dispatched.await {
                    answer_service_error(&slot, e).await;
                }
            });
        }
        Box::pin(async move {
            let result = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
                Ok(()) => {
                    let dispatched = service.call(Incoming::new(responder, call));
                    put_spare(id, service);
                    dispatched.await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                answer_service_error(&slot, e).await;
            }
        })
    }
}

/// Answers a call that its service failed (an overloaded or timed-out layer) with the
/// error's text, unless it was answered already.
async fn answer_service_error(slot: &crate::rpc::responder::Slot, e: impl Display) {
    tracing::debug!(error = %e, "rpc: middleware failed the call");
    if let Some(w) = slot.take_writer() {
        respond_fallback(w, &*slot.codec, Some(e.to_string())).await;
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
