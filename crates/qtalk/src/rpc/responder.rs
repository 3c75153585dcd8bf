//! The answering side of a call: [`Responder`] and, once a call continued, [`Continued`];
//! what the answer was, as middleware sees it: [`Outcome`].

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::AsyncWrite;

use crate::codec::Codec;
use crate::rpc::frame::{encode_frame, SMALL_FRAMES};
use crate::rpc::io::CallWriter;
use crate::rpc::{Error, ResponseHeader};

/// How a call was answered, as a middleware layer sees it once the handler is done (see
/// [`HandlerService`](crate::rpc::HandlerService)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Answered with one or more values.
    Returned,
    /// Answered with an error: its text (as the caller reads it after `remote: `).
    Failed(String),
    /// Answered and kept the channel ([`Responder::continue_with`]).
    Continued,
    /// Took over the channel without answering ([`Responder::detach`], e.g. a proxy).
    Detached,
    /// Returned without answering: the server answers `null` for it, as the reference does.
    Unanswered,
    /// Panicked: the server answers `panic: <message>`.
    Panicked(String),
}

impl Outcome {
    /// True for [`Outcome::Failed`] and [`Outcome::Panicked`].
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Panicked(_))
    }

    /// A short label for metrics and logs: `ok`, `error`, `continued`, `detached`,
    /// `unanswered` or `panic`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Returned => "ok",
            Outcome::Failed(_) => "error",
            Outcome::Continued => "continued",
            Outcome::Detached => "detached",
            Outcome::Unanswered => "unanswered",
            Outcome::Panicked(_) => "panic",
        }
    }
}

/// [`Outcome`] as stored in [`CallState`].
const NONE: u8 = 0;
const RETURNED: u8 = 1;
const FAILED: u8 = 2;
const CONTINUED: u8 = 3;
const DETACHED: u8 = 4;

/// What one call's [`Responder`], its [`Call`](crate::rpc::Call) and the task serving it
/// share (one allocation).
pub(crate) struct CallState {
    /// The write side, until the response takes it; the serving task answers for a handler
    /// that did not.
    writer: Mutex<Option<CallWriter>>,
    /// Set by the [`Call`](crate::rpc::Call) once the arguments were read: the channel can
    /// then close together with the response.
    args_done: AtomicBool,
    /// How the response began (the constants above).
    answered: AtomicU8,
    /// The text of an error answer.
    error: OnceLock<String>,
    /// The codec of the answer (kept here, so that whoever answers for a handler has it
    /// without a reference count of its own).
    pub(crate) codec: Arc<dyn Codec>,
}

impl CallState {
    /// The state of a call answered through `w`.
    pub(crate) fn new(w: CallWriter, codec: Arc<dyn Codec>) -> Slot {
        Arc::new(CallState {
            writer: Mutex::new(Some(w)),
            args_done: AtomicBool::new(false),
            answered: AtomicU8::new(NONE),
            error: OnceLock::new(),
            codec,
        })
    }

    /// The write side, unless a response took it.
    pub(crate) fn take_writer(&self) -> Option<CallWriter> {
        self.lock().take()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Option<CallWriter>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn args_done(&self) -> bool {
        self.args_done.load(Ordering::Acquire)
    }

    pub(crate) fn mark_args_done(&self) {
        self.args_done.store(true, Ordering::Release);
    }

    /// How the call was answered so far.
    pub(crate) fn outcome(&self) -> Outcome {
        match self.answered.load(Ordering::Acquire) {
            RETURNED => Outcome::Returned,
            FAILED => Outcome::Failed(self.error.get().cloned().unwrap_or_default()),
            CONTINUED => Outcome::Continued,
            DETACHED => Outcome::Detached,
            _ => Outcome::Unanswered,
        }
    }

    fn record(&self, how: u8, error: Option<&str>) {
        if let Some(e) = error {
            let _ = self.error.set(e.to_string());
        }
        self.answered.store(how, Ordering::Release);
    }
}

/// A call's shared state.
pub(crate) type Slot = Arc<CallState>;

/// Sends the response of one call: [`Responder::ret`] a value, [`Responder::error`], several
/// values with [`Responder::ret_many`], or [`Responder::continue_with`] to keep the channel.
pub struct Responder {
    pub(crate) slot: Slot,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    pub(crate) fn new(slot: Slot) -> Self {
        Responder { slot }
    }

    fn take(&self) -> Result<CallWriter, Error> {
        self.slot.take_writer().ok_or(Error::AlreadyResponded)
    }

    /// Answers with one value and closes the channel. The value is encoded before the
    /// returned future is first polled, so it need not outlive the call.
    pub fn ret<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let prepared = self.prepare(None, false, std::iter::once(value));
        let close = self.slot.args_done();
        async move {
            let (w, buf) = prepared?;
            finish_response(w, buf, close).await.map(drop)
        }
    }

    /// Answers with several values (a multi-value return) and closes the channel.
    pub fn ret_many<T, I>(
        self,
        values: I,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static
    where
        T: Serialize,
        I: IntoIterator<Item = T>,
    {
        let values: Vec<T> = values.into_iter().collect();
        let prepared = self.prepare(None, false, values.iter());
        let close = self.slot.args_done();
        async move {
            let (w, buf) = prepared?;
            finish_response(w, buf, close).await.map(drop)
        }
    }

    /// Answers with an error (the caller sees `remote: <message>`) and closes the channel.
    pub fn error(
        self,
        message: impl Display,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let prepared = self.prepare(Some(message.to_string()), false, std::iter::once(&()));
        let close = self.slot.args_done();
        async move {
            let (w, buf) = prepared?;
            finish_response(w, buf, close).await.map(drop)
        }
    }

    /// Answers with `value` and keeps the channel open: the returned [`Continued`] sends more
    /// values or raw bytes; the [`Call`](crate::rpc::Call) keeps receiving. Closing is then
    /// up to the handler.
    pub fn continue_with<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> impl Future<Output = Result<Continued, Error>> + Send + 'static {
        let codec = self.slot.codec.clone();
        let prepared = self.prepare(None, true, std::iter::once(value));
        async move {
            let (w, buf) = prepared?;
            let w = finish_response(w, buf, false).await?;
            Ok(Continued { w, codec })
        }
    }

    /// Takes over the channel without sending a response, for handlers that relay a
    /// response produced elsewhere (see [`proxy_handler`](crate::rpc::proxy_handler)).
    pub fn detach(self) -> Result<Continued, Error> {
        let w = self.take()?;
        self.slot.record(DETACHED, None);
        Ok(Continued {
            w,
            codec: self.slot.codec.clone(),
        })
    }

    fn prepare<'a, T, I>(
        &self,
        error: Option<String>,
        continue_: bool,
        values: I,
    ) -> Result<(CallWriter, Bytes), Error>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        let how = match (&error, continue_) {
            (Some(_), _) => FAILED,
            (None, true) => CONTINUED,
            (None, false) => RETURNED,
        };
        let buf = encode_response(&*self.slot.codec, error.as_deref(), continue_, values)?;
        let w = self.take()?;
        self.slot.record(how, error.as_deref());
        Ok((w, buf))
    }
}

/// Encodes a response header and its values (a `null` when there are none, or on error).
pub(crate) fn encode_response<'a, T, I>(
    codec: &dyn Codec,
    error: Option<&str>,
    continue_: bool,
    values: I,
) -> Result<Bytes, Error>
where
    T: Serialize + ?Sized + 'a,
    I: IntoIterator<Item = &'a T>,
{
    let mut buf = BytesMut::with_capacity(SMALL_FRAMES);
    let failed = error.is_some();
    encode_frame(codec, &ResponseHeader::encoding(error, continue_), &mut buf)?;
    let mut any = false;
    if !failed {
        for v in values {
            encode_frame(codec, v, &mut buf)?;
            any = true;
        }
    }
    if !any {
        encode_frame(codec, &(), &mut buf)?;
    }
    Ok(buf.freeze())
}

/// Writes an encoded response in one write. Unless continuing, this side is done with the
/// channel: with `close` (the arguments were read) the CLOSE goes out with the response;
/// otherwise the write half is dropped and the channel closes once the
/// [`Call`](crate::rpc::Call) is gone too (which waits for the arguments if they were never
/// read).
pub(crate) async fn finish_response(
    mut w: CallWriter,
    buf: Bytes,
    close: bool,
) -> Result<CallWriter, Error> {
    if close {
        w.write_bytes_and_close(buf).await?;
    } else {
        w.write_bytes(buf).await?;
    }
    Ok(w)
}

/// Answers a call the handler left unanswered (null or an error) and closes it.
pub(crate) async fn respond_fallback(w: CallWriter, codec: &dyn Codec, error: Option<String>) {
    if let Ok(buf) = encode_response(codec, error.as_deref(), false, std::iter::once(&())) {
        let _ = finish_response(w, buf, false).await;
    }
}

/// The sending side of a continued call: more values ([`Continued::send`]) or raw bytes
/// (`AsyncWrite`, [`Continued::write_bytes`]). `shutdown`/[`Continued::close_write`] send
/// EOF; dropping it (and the receiving side: the responder's [`Call`](crate::rpc::Call), or
/// the caller's [`ResponseReader`](crate::rpc::ResponseReader)) closes the channel. The
/// responder gets it from [`Responder::continue_with`]; the caller from
/// [`Response::into_split`](crate::rpc::Response::into_split), as
/// [`ResponseWriter`](crate::rpc::ResponseWriter).
pub struct Continued {
    pub(crate) w: CallWriter,
    pub(crate) codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for Continued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Continued")
            .field("channel", &self.w.id())
            .finish_non_exhaustive()
    }
}

impl Continued {
    /// Sends one value.
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let mut buf = BytesMut::with_capacity(SMALL_FRAMES);
        encode_frame(&*self.codec, value, &mut buf)?;
        Ok(self.w.write_bytes(buf.freeze()).await?)
    }

    /// Writes raw bytes without copying large buffers; returns once all of `data` is queued.
    /// The zero-copy counterpart of `AsyncWrite`.
    pub async fn write_bytes(&mut self, data: bytes::Bytes) -> io::Result<()> {
        self.w.write_bytes(data).await
    }

    /// Sends EOF; the other side reads end-of-stream (this side can still read).
    pub fn close_write(&self) -> Result<(), Error> {
        Ok(self.w.close_write()?)
    }

    /// Closes the channel.
    pub fn close(&self) -> Result<(), Error> {
        Ok(self.w.close()?)
    }
}

impl AsyncWrite for Continued {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().w).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().w).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().w).poll_shutdown(cx)
    }
}
