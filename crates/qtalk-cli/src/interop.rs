//! The interop service, as the reference's `qtalk interop` serves it, and the callback
//! handlers a checker answers with.
//!
//! [`service`] answers four selectors. Each of `Unary`, `Stream` and `Bytes` first calls the
//! *same selector back* on whoever called it, with the arguments it received, and answers
//! with what that callback returned:
//!
//! - `Unary(v)`: calls back `Unary(v)` and returns its reply.
//! - `Stream(v)`: calls back `Stream(v)`, continues with the callback's reply, then relays
//!   every value the caller streams to the callback and every value the callback streams back
//!   to the caller, until the caller ends its stream and the callback ends its own.
//! - `Bytes(v)`: like `Stream`, relaying raw bytes instead of values.
//! - `Error(text)`: answers with the error `text`.
//!
//! [`callbacks`] is the other half (the reference's `CallbackService`): `Unary` returns its
//! argument, `Stream` continues with its argument and echoes every value, `Bytes` continues
//! with its argument and echoes raw bytes.
//!
//! Peer faults (an rpc frame above the size limit, undecodable bytes) are reported to a
//! [`Faults`] so that `qtalk interop` can stop with one clear line: faults in a call's values
//! by the handlers, malformed call headers through the rpc layer's `on_bad_call` hook.

use std::sync::{Arc, Mutex};

use qtalk::codec::Codec;
use qtalk::rpc::{handler_fn, Call, Caller, Error, Options, Peer, RespondMux, Responder};
use qtalk::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Buffer size for relaying raw bytes.
const PUMP_BUF: usize = 256 * 1024;

/// Collects peer faults: the first one reported is kept and wakes [`Faults::wait`].
#[derive(Clone, Default, Debug)]
pub struct Faults {
    inner: Arc<FaultsInner>,
}

#[derive(Default, Debug)]
struct FaultsInner {
    first: Mutex<Option<String>>,
    notify: Notify,
}

impl Faults {
    /// No faults yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fault (only the first one is kept).
    pub fn report(&self, message: impl Into<String>) {
        let mut first = self.inner.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(message.into());
            self.inner.notify.notify_waiters();
            self.inner.notify.notify_one();
        }
    }

    /// The first fault reported, if any.
    pub fn first(&self) -> Option<String> {
        self.inner
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the first fault and returns it.
    pub async fn wait(&self) -> String {
        loop {
            let notified = self.inner.notify.notified();
            if let Some(f) = self.first() {
                return f;
            }
            notified.await;
        }
    }

    /// Reports `e` if it means the peer sent bytes that are not valid rpc frames.
    pub fn note(&self, what: &str, e: &Error) {
        if is_peer_fault(e) {
            self.report(format!("{what}: {e}"));
        } else {
            tracing::debug!(error = %e, "{what}");
        }
    }
}

/// Whether an rpc error means the peer broke the rpc framing or sent undecodable bytes (as
/// opposed to closing a channel early or a remote error).
pub fn is_peer_fault(e: &Error) -> bool {
    matches!(e, Error::FrameTooLarge { .. } | Error::Codec(_))
}

/// The hint `qtalk interop` prints on stderr when it serves stdin/stdout and stdin is a
/// terminal (`stdin_is_terminal`), where it would otherwise seem to hang; `None` otherwise.
pub fn terminal_hint(stdin_is_terminal: bool) -> Option<&'static str> {
    stdin_is_terminal.then_some(
        "qtalk interop: speaking qmux on stdin/stdout, for a checker to spawn (e.g. `qtalk check \
         'qtalk interop'`); to serve a socket use --listen URL (e.g. --listen \
         tcp://127.0.0.1:9000); Ctrl-D ends",
    )
}

/// The interop service (see the [module documentation](self)). Faults found while serving are
/// reported to `faults`.
pub fn service(faults: Faults) -> RespondMux {
    let mux = RespondMux::new();
    let f = faults.clone();
    mux.handle(
        "Unary",
        handler_fn(move |r: Responder, call: Call| unary(r, call, f.clone())),
    )
    .expect("fresh mux");
    let f = faults.clone();
    mux.handle(
        "Stream",
        handler_fn(move |r: Responder, call: Call| stream(r, call, f.clone())),
    )
    .expect("fresh mux");
    let f = faults.clone();
    mux.handle(
        "Bytes",
        handler_fn(move |r: Responder, call: Call| bytes(r, call, f.clone())),
    )
    .expect("fresh mux");
    mux.handle(
        "Error",
        handler_fn(move |r: Responder, call: Call| error(r, call, faults.clone())),
    )
    .expect("fresh mux");
    mux
}

/// Serves the interop service on `session` and returns the running peer.
pub fn serve(session: qtalk_mux::Session, codec: Arc<dyn Codec>, faults: Faults) -> Peer {
    let hook = faults.clone();
    let options = Options::builder()
        .on_bad_call(move |bad| {
            hook.report(format!(
                "{} (call header on channel {})",
                bad.error(),
                bad.channel()
            ))
        })
        .build()
        .unwrap_or_default();
    let peer = Peer::with_options(session, codec, options).handler(service(faults));
    peer.respond();
    peer
}

/// Serves the [`callbacks`] on `session` (what a checker does) and returns the running peer,
/// whose [`Peer::caller`] makes the checked calls.
pub fn serve_callbacks(session: qtalk_mux::Session, codec: Arc<dyn Codec>) -> Peer {
    let peer = Peer::new(session, codec).handler(callbacks());
    peer.respond();
    peer
}

async fn receive_args(
    r: Responder,
    call: &mut Call,
    faults: &Faults,
) -> Option<(Responder, Value)> {
    match call.receive::<Value>().await {
        Ok(v) => Some((r, v)),
        Err(e) => {
            faults.note("reading the call's arguments", &e);
            if !matches!(e, Error::Truncated) {
                let _ = r.error(format!("reading the arguments: {e}")).await;
            }
            None
        }
    }
}

async fn unary(r: Responder, mut call: Call, faults: Faults) {
    let Some((r, params)) = receive_args(r, &mut call, &faults).await else {
        return;
    };
    let caller = call.caller().clone();
    match caller.call::<_, Value>("Unary", &params).await {
        Ok(ret) => {
            let _ = r.ret(&ret).await;
        }
        Err(e) => {
            faults.note("the Unary callback", &e);
            let _ = r.error(format!("Unary callback: {e}")).await;
        }
    }
}

/// Calls `selector` back with `params`; returns the callback's response and its reply value.
async fn call_back(
    caller: &Caller,
    selector: &str,
    params: &Value,
    faults: &Faults,
) -> Result<(qtalk::rpc::Response, Value), String> {
    let mut resp = caller.call_raw(selector, params).await.map_err(|e| {
        faults.note("the callback", &e);
        format!("{selector} callback: {e}")
    })?;
    let ret = resp.receive::<Value>().await.map_err(|e| {
        faults.note("the callback's reply", &e);
        format!("{selector} callback: {e}")
    })?;
    Ok((resp, ret))
}

async fn stream(r: Responder, mut call: Call, faults: Faults) {
    let Some((r, params)) = receive_args(r, &mut call, &faults).await else {
        return;
    };
    let caller = call.caller().clone();
    let (mut upstream, ret) = match call_back(&caller, "Stream", &params, &faults).await {
        Ok(x) => x,
        Err(msg) => {
            let _ = r.error(msg).await;
            return;
        }
    };
    let Ok(mut down) = r.continue_with(&ret).await else {
        return;
    };
    let mut caller_open = true;
    loop {
        tokio::select! {
            v = call.receive_next::<Value>(), if caller_open => match v {
                Ok(Some(v)) => {
                    if upstream.send(&v).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    caller_open = false;
                    let _ = upstream.close_write();
                }
                Err(e) => {
                    faults.note("the streamed values", &e);
                    caller_open = false;
                    let _ = upstream.close_write();
                }
            },
            v = upstream.receive_next::<Value>() => match v {
                Ok(Some(v)) => {
                    if down.send(&v).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    faults.note("the callback's streamed values", &e);
                    break;
                }
            },
        }
    }
    let _ = down.close_write();
}

async fn bytes(r: Responder, mut call: Call, faults: Faults) {
    let Some((r, params)) = receive_args(r, &mut call, &faults).await else {
        return;
    };
    let caller = call.caller().clone();
    let (upstream, ret) = match call_back(&caller, "Bytes", &params, &faults).await {
        Ok(x) => x,
        Err(msg) => {
            let _ = r.error(msg).await;
            return;
        }
    };
    let Ok(mut down) = r.continue_with(&ret).await else {
        return;
    };
    let (mut up_r, mut up_w) = tokio::io::split(upstream);
    let forward = async {
        let _ = pump(&mut call, &mut up_w).await;
        let _ = up_w.shutdown().await;
    };
    let back = async {
        let _ = pump(&mut up_r, &mut down).await;
        let _ = down.close_write();
    };
    tokio::join!(forward, back);
}

async fn error(r: Responder, mut call: Call, faults: Faults) {
    let Some((r, text)) = receive_args(r, &mut call, &faults).await else {
        return;
    };
    let text = match text {
        Value::Text(s) => s,
        other => crate::gofmt::go_format(&other),
    };
    let _ = r.error(text).await;
}

/// The callback handlers a checker serves (the reference's `CallbackService`): echoes.
pub fn callbacks() -> RespondMux {
    let mux = RespondMux::new();
    mux.handle(
        "Unary",
        handler_fn(|r: Responder, mut call: Call| async move {
            match call.receive::<Value>().await {
                Ok(v) => {
                    let _ = r.ret(&v).await;
                }
                Err(e) => {
                    let _ = r.error(e).await;
                }
            }
        }),
    )
    .expect("fresh mux");
    mux.handle(
        "Stream",
        handler_fn(|r: Responder, mut call: Call| async move {
            let v = match call.receive::<Value>().await {
                Ok(v) => v,
                Err(e) => {
                    let _ = r.error(e).await;
                    return;
                }
            };
            let Ok(mut cont) = r.continue_with(&v).await else {
                return;
            };
            while let Ok(Some(v)) = call.receive_next::<Value>().await {
                if cont.send(&v).await.is_err() {
                    break;
                }
            }
            let _ = cont.close_write();
        }),
    )
    .expect("fresh mux");
    mux.handle(
        "Bytes",
        handler_fn(|r: Responder, mut call: Call| async move {
            let v = match call.receive::<Value>().await {
                Ok(v) => v,
                Err(e) => {
                    let _ = r.error(e).await;
                    return;
                }
            };
            let Ok(mut cont) = r.continue_with(&v).await else {
                return;
            };
            let _ = pump(&mut call, &mut cont).await;
            let _ = cont.close_write();
        }),
    )
    .expect("fresh mux");
    mux
}

/// Copies `from` to `to` until end-of-stream with a large buffer; returns the bytes copied.
pub async fn pump<R, W>(from: &mut R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; PUMP_BUF];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}
