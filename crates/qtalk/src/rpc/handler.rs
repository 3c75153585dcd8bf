//! The [`Handler`] trait, and handlers made of closures ([`handler_fn`], [`func`]) or of
//! another peer ([`proxy_handler`]).

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::rpc::args::Params;
use crate::rpc::{Call, Caller, Responder};

/// A boxed, sendable future, as handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Answers calls. Implemented by [`RespondMux`](crate::rpc::RespondMux), by [`handler_fn`] and [`func`] closures, and by
/// any type of yours.
///
/// If the handler neither returns a value nor continues, the caller receives `null`, as in the
/// reference. A panicking handler answers with an error and the session keeps serving.
///
/// Handlers compose with tower middleware through
/// [`HandlerService`](crate::rpc::HandlerService) and
/// [`ServiceHandler`](crate::rpc::ServiceHandler), and are tested without a session with
/// [`testing::TestCall`](crate::rpc::testing::TestCall).
pub trait Handler: Send + Sync + 'static {
    /// Handles one call.
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()>;
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        (**self).respond(responder, call)
    }
}

/// A handler from a closure taking the [`Responder`] and the [`Call`], like Go's
/// `rpc.HandlerFunc`.
pub struct HandlerFn<F>(F);

/// Makes a [`Handler`] from `async |responder, call| { ... }`.
///
/// ```
/// use qtalk::rpc::{handler_fn, Call, Responder};
/// let echo = handler_fn(|r: Responder, mut call: Call| async move {
///     let v: qtalk::Value = call.receive().await.unwrap_or(qtalk::Value::Null);
///     let _ = r.ret(&v).await;
/// });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Responder, Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Responder, Call) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        Box::pin((self.0)(responder, call))
    }
}

/// A handler from a function of positional parameters, like the reference's exported
/// functions: the arguments are an array, checked for count; `Ok(v)` answers `v`, `Err(e)`
/// answers the error text.
///
/// ```
/// use qtalk::rpc::{func, Call};
/// let upper = func(|_call: Call, (s,): (String,)| async move {
///     Ok::<_, std::convert::Infallible>(s.to_uppercase())
/// });
/// # let _ = upper;
/// ```
pub fn func<P, F, Fut, T, E>(f: F) -> impl Handler
where
    P: Params,
    F: Fn(Call, P) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Serialize + Send + 'static,
    E: Display + Send + 'static,
{
    let f = Arc::new(f);
    handler_fn(move |r: Responder, mut call: Call| {
        let f = f.clone();
        async move {
            let params = match call.params::<P>().await {
                Ok(p) => p,
                Err(e) => {
                    let _ = r.error(e).await;
                    return;
                }
            };
            let _ = match f(call, params).await {
                Ok(v) => r.ret(&v).await,
                Err(e) => r.error(e).await,
            };
        }
    })
}

/// A handler that forwards every call it gets to `dst` unchanged (same selector, arguments,
/// streamed values and raw bytes), and relays the response: mount it as the default handler of
/// a front router to put a backend behind it.
pub fn proxy_handler(dst: Caller) -> impl Handler {
    handler_fn(move |r: Responder, call: Call| {
        let dst = dst.clone();
        async move {
            // The call's metadata and deadline go along: this is the same call, relayed.
            let upstream = match dst.request_with(call.context(), call.selector()).await {
                Ok(req) => req.into_response_stream(),
                Err(e) => {
                    let _ = r.error(e).await;
                    return;
                }
            };
            let Ok(mut down) = r.detach() else { return };
            let (mut up_r, mut up_w) = tokio::io::split(upstream);
            let mut call = call;
            let forward = async {
                let _ = tokio::io::copy(&mut call, &mut up_w).await;
                let _ = up_w.shutdown().await;
            };
            let back = async {
                let _ = tokio::io::copy(&mut up_r, &mut down).await;
                let _ = down.close();
            };
            tokio::join!(forward, back);
        }
    })
}
