//! The responding side: [`Handler`], [`Responder`], [`Call`], [`Continued`].

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::codec::{self, Codec};
use crate::rpc::args::{decode_params, Params};
use crate::rpc::frame::{encode_frame, FrameReader, SMALL_FRAMES};
use crate::rpc::{Caller, Error, ResponseHeader};

/// A boxed, sendable future, as handlers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Answers calls. Implemented by [`RespondMux`](crate::rpc::RespondMux), by [`handler_fn`] and [`func`] closures, and by
/// any type of yours.
///
/// If the handler neither returns a value nor continues, the caller receives `null`, as in the
/// reference. A panicking handler answers with an error and the session keeps serving.
pub trait Handler: Send + Sync + 'static {
    /// Handles one call.
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()>;
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        (**self).respond(responder, call)
    }
}

/// What one call's [`Responder`], its [`Call`] and the task serving it share (one allocation).
pub(crate) struct CallState {
    /// The write side, until the response takes it; the serving task answers for a handler
    /// that did not.
    writer: Mutex<Option<qtalk_mux::WriteHalf>>,
    /// Set by the [`Call`] once the arguments were read: the channel can then close together
    /// with the response.
    args_done: AtomicBool,
}

impl CallState {
    /// The state of a call answered through `w`.
    pub(crate) fn new(w: qtalk_mux::WriteHalf) -> Slot {
        Arc::new(CallState {
            writer: Mutex::new(Some(w)),
            args_done: AtomicBool::new(false),
        })
    }

    /// The write side, unless a response took it.
    pub(crate) fn take_writer(&self) -> Option<qtalk_mux::WriteHalf> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn args_done(&self) -> bool {
        self.args_done.load(Ordering::Acquire)
    }
}

/// A call's shared state.
pub(crate) type Slot = Arc<CallState>;

/// Sends the response of one call: [`Responder::ret`] a value, [`Responder::error`], several
/// values with [`Responder::ret_many`], or [`Responder::continue_with`] to keep the channel.
pub struct Responder {
    slot: Slot,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

impl Responder {
    pub(crate) fn new(slot: Slot, codec: Arc<dyn Codec>) -> Self {
        Responder { slot, codec }
    }

    fn take(&self) -> Result<qtalk_mux::WriteHalf, Error> {
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
    /// values or raw bytes; the [`Call`] keeps receiving. Closing is then up to the handler.
    pub fn continue_with<T: Serialize + ?Sized>(
        self,
        value: &T,
    ) -> impl Future<Output = Result<Continued, Error>> + Send + 'static {
        let codec = self.codec.clone();
        let prepared = self.prepare(None, true, std::iter::once(value));
        async move {
            let (w, buf) = prepared?;
            let w = finish_response(w, buf, false).await?;
            Ok(Continued { w, codec })
        }
    }

    /// Takes over the channel without sending a response, for handlers that relay a
    /// response produced elsewhere (see [`proxy_handler`]).
    pub fn detach(self) -> Result<Continued, Error> {
        Ok(Continued {
            w: self.take()?,
            codec: self.codec.clone(),
        })
    }

    fn prepare<'a, T, I>(
        &self,
        error: Option<String>,
        continue_: bool,
        values: I,
    ) -> Result<(qtalk_mux::WriteHalf, Bytes), Error>
    where
        T: Serialize + ?Sized + 'a,
        I: IntoIterator<Item = &'a T>,
    {
        let buf = encode_response(&*self.codec, error, continue_, values)?;
        Ok((self.take()?, buf))
    }
}

/// Encodes a response header and its values (a `null` when there are none, or on error).
pub(crate) fn encode_response<'a, T, I>(
    codec: &dyn Codec,
    error: Option<String>,
    continue_: bool,
    values: I,
) -> Result<Bytes, Error>
where
    T: Serialize + ?Sized + 'a,
    I: IntoIterator<Item = &'a T>,
{
    let mut buf = BytesMut::with_capacity(SMALL_FRAMES);
    let failed = error.is_some();
    encode_frame(codec, &ResponseHeader { error, continue_ }, &mut buf)?;
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
/// otherwise the write half is dropped and the channel closes once the [`Call`] is gone too
/// (which waits for the arguments if they were never read, see [`Call`]).
pub(crate) async fn finish_response(
    mut w: qtalk_mux::WriteHalf,
    buf: Bytes,
    close: bool,
) -> Result<qtalk_mux::WriteHalf, Error> {
    if close {
        w.write_bytes_and_close(buf).await?;
    } else {
        w.write_bytes(buf).await?;
    }
    Ok(w)
}

/// Answers a call the handler left unanswered (null or an error) and closes it.
pub(crate) async fn respond_fallback(
    w: qtalk_mux::WriteHalf,
    codec: &dyn Codec,
    error: Option<String>,
) {
    if let Ok(buf) = encode_response(codec, error, false, std::iter::once(&())) {
        let _ = finish_response(w, buf, false).await;
    }
}

/// The sending side of a continued call: more values ([`Continued::send`]) or raw bytes
/// (`AsyncWrite`, [`Continued::write_bytes`]). `shutdown`/[`Continued::close_write`] send
/// EOF; dropping it (and the receiving side: the responder's [`Call`], or the caller's
/// [`ResponseReader`](crate::rpc::ResponseReader)) closes the channel. The responder gets it
/// from [`Responder::continue_with`]; the caller from
/// [`Response::into_split`](crate::rpc::Response::into_split), as
/// [`ResponseWriter`](crate::rpc::ResponseWriter).
pub struct Continued {
    pub(crate) w: qtalk_mux::WriteHalf,
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

/// An incoming call: its selector, a [`Caller`] back to the calling peer, and the values (or,
/// after continuing, raw bytes) the caller sends.
pub struct Call {
    selector: String,
    caller: Caller,
    reader: FrameReader,
    /// `None` only while dropping.
    r: Option<qtalk_mux::ReadHalf>,
    codec: Arc<dyn Codec>,
    /// The arguments (or the end of the caller's stream) have been read.
    args_read: bool,
    /// The responder's side of the channel, watched by [`Call::cancelled`], and whether the
    /// arguments arrived whole (shared with the [`Responder`]).
    slot: Slot,
    /// See [`Options::args_grace`](crate::rpc::Options::args_grace).
    args_grace: std::time::Duration,
}

impl Drop for Call {
    /// A caller writes the header and the arguments separately (the reference does), so a
    /// responder that answers without reading the arguments (e.g. `not found`) must not close
    /// the channel before they arrive, or the caller's second write fails and it never sees
    /// the answer. The channel stays open until they came (or a short grace period passed).
    fn drop(&mut self) {
        if self.args_read {
            return;
        }
        let (Some(mut r), Ok(rt)) = (self.r.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let grace = self.args_grace;
        let mut reader = std::mem::replace(&mut self.reader, FrameReader::new(0));
        rt.spawn(async move {
            let _ = tokio::time::timeout(grace, reader.next(&mut r)).await;
        });
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("selector", &self.selector)
            .field("channel", &self.channel_id())
            .finish_non_exhaustive()
    }
}

impl Call {
    pub(crate) fn new(
        selector: String,
        caller: Caller,
        reader: FrameReader,
        r: qtalk_mux::ReadHalf,
        slot: Slot,
        args_grace: std::time::Duration,
    ) -> Self {
        Call {
            selector,
            codec: caller.codec().clone(),
            caller,
            reader,
            r: Some(r),
            args_read: false,
            slot,
            args_grace,
        }
    }

    fn mark_args_done(&self) {
        self.slot.args_done.store(true, Ordering::Release);
    }

    /// The normalized selector (`/`-separated, with a leading `/`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// A caller on the session this call arrived on: call back whoever called.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Completes when the caller gives up on the call: it closed the call's channel (a
    /// deadline, a dropped call future, the reference's cancelled context) or the session
    /// ended. The handler is not stopped by it; race its work against this future to stop
    /// early:
    ///
    /// ```
    /// use qtalk::rpc::{handler_fn, Call, Responder};
    /// let slow = handler_fn(|r: Responder, call: Call| async move {
    ///     tokio::select! {
    ///         _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
    ///             let _ = r.ret(&"done").await;
    ///         }
    ///         _ = call.cancelled() => {} // nobody waits for the answer any more
    ///     }
    /// });
    /// # let _ = slow;
    /// ```
    ///
    /// Once the response was sent, it is complete at once.
    pub fn cancelled(&self) -> qtalk_mux::PeerClosed {
        match &*self.slot.writer.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(w) => w.peer_closed(),
            None => qtalk_mux::PeerClosed::done(),
        }
    }

    /// The channel id of this call.
    pub fn channel_id(&self) -> qtalk_mux::ChannelId {
        self.r
            .as_ref()
            .map_or(qtalk_mux::ChannelId::new(0), |r| r.id())
    }

    /// Receives the next value: first the arguments, then any streamed values.
    pub async fn receive<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        self.args_read = true;
        let r = self.r.as_mut().expect("present until drop");
        let v = self.reader.receive(&*self.codec, r).await?;
        self.mark_args_done();
        Ok(v)
    }

    /// Receives the next value, or `None` once the caller ended its stream.
    pub async fn receive_next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        self.args_read = true;
        let r = self.r.as_mut().expect("present until drop");
        let next = self.reader.next(r).await?;
        self.mark_args_done();
        match next {
            Some(body) => Ok(Some(codec::decode(&*self.codec, &body)?)),
            None => Ok(None),
        }
    }

    /// Receives the arguments as positional parameters (an array), checking the count like
    /// the reference: `fn: expected N params, got M`.
    pub async fn params<P: Params>(&mut self) -> Result<P, Error> {
        self.args_read = true;
        let r = self.r.as_mut().expect("present until drop");
        match self.reader.next(r).await? {
            Some(body) => {
                self.mark_args_done();
                decode_params(&*self.codec, &body)
            }
            None => Err(Error::Truncated),
        }
    }

    /// Receives up to `max` raw bytes (after the arguments, once continued) without copying
    /// them; `None` at end-of-stream. The zero-copy counterpart of `AsyncRead`.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<bytes::Bytes>> {
        self.args_read = true;
        match self.r.as_mut() {
            Some(r) => self.reader.read_chunk(r, max).await,
            None => Ok(None),
        }
    }
}

impl AsyncRead for Call {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.args_read = true;
        if this.reader.has_buffered() {
            this.reader.drain_into(buf);
            return Poll::Ready(Ok(()));
        }
        match this.r.as_mut() {
            Some(r) => Pin::new(r).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
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
            let upstream = match dst.request(call.selector()).await {
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
