//! The calling side: [`Caller`], [`Request`], [`Response`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::codec::{Codec, IntoCodec};
use crate::rpc::callback::Callbacks;
use crate::rpc::frame::{encode_frame, FrameReader, SMALL_FRAMES};
use crate::rpc::service::Outgoing;
use crate::rpc::{CallContext, Error, Metadata, Options, ResponseHeader};

/// [`CallHeader`](crate::rpc::CallHeader) borrowing its parts, for encoding without a copy.
/// Without metadata and deadline it is `{Selector}` alone, byte for byte the reference's.
#[derive(Serialize)]
struct CallHeaderRef<'a> {
    #[serde(rename = "Selector")]
    selector: &'a str,
    #[serde(rename = "Meta", skip_serializing_if = "Metadata::is_empty")]
    meta: &'a Metadata,
    #[serde(rename = "Deadline", skip_serializing_if = "Option::is_none")]
    deadline: Option<u64>,
}

/// What every call of a [`Caller`] handle carries unless the call says otherwise
/// ([`Caller::with_metadata`], [`Caller::with_timeout`]).
#[derive(Clone, Debug, Default)]
struct Defaults {
    /// The default metadata (and no deadline): what a call without a context of its own
    /// goes out with, as is, when there is no default timeout.
    context: CallContext,
    timeout: Option<Duration>,
}

/// The context of a call without one of its own.
static NO_CONTEXT: std::sync::LazyLock<CallContext> = std::sync::LazyLock::new(CallContext::new);

/// Makes calls over a session: each call opens its own channel.
///
/// Cheap to clone. A handler reaches the caller of the session it was called on through
/// [`Call::caller`](crate::rpc::Call::caller), so it can call back whoever called it.
///
/// Every call can carry metadata and a deadline ([`Caller::call_with`], a
/// [`CallContext`]); a handle made with [`Caller::with_metadata`] or [`Caller::with_timeout`]
/// adds them to all its calls (a token, a default timeout), which is how typed clients get
/// them.
#[derive(Clone)]
pub struct Caller {
    session: qtalk_mux::Session,
    codec: Arc<dyn Codec>,
    options: Arc<Options>,
    callbacks: Arc<Callbacks>,
    spares: Arc<Spares>,
    /// `None` (the common case) costs nothing per call.
    defaults: Option<Arc<Defaults>>,
}

/// Channels opened ahead of calls ([`Options::spare_channels`]), shared by a caller's clones.
/// Each is the open itself, started (its OPEN sent) but not awaited: the call that takes it
/// awaits the rest (usually nothing: the confirmation came meanwhile). No task is involved,
/// and dropping the caller abandons the opens with it.
#[derive(Default)]
struct Spares {
    state: std::sync::Mutex<SpareState>,
}

type PendingOpen =
    Pin<Box<dyn std::future::Future<Output = Result<qtalk_mux::Channel, qtalk_mux::Error>> + Send>>;

#[derive(Default)]
struct SpareState {
    /// Opens under way or done, and when each started.
    ready: Vec<(PendingOpen, std::time::Instant)>,
    /// No spare is opened before this (after the peer refused one).
    paused_until: Option<std::time::Instant>,
}

/// How long spares stay off after the peer refused one.
const SPARE_PAUSE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("codec", &self.codec.name())
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// A caller on `session` using `codec`, with default [`Options`].
    pub fn new(session: qtalk_mux::Session, codec: impl IntoCodec) -> Caller {
        Caller::with_options(session, codec, Options::default())
    }

    /// [`Caller::new`] with explicit options.
    pub fn with_options(
        session: qtalk_mux::Session,
        codec: impl IntoCodec,
        options: Options,
    ) -> Caller {
        Caller {
            session,
            codec: codec.into_codec(),
            options: Arc::new(options),
            callbacks: Arc::default(),
            spares: Arc::default(),
            defaults: None,
        }
    }

    /// This caller (sharing its session, callbacks and spare channels) with `key` set to
    /// `value` in the metadata of every call it makes, unless the call sets the key itself:
    /// e.g. a token.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let (a, _b) = tokio::io::duplex(1024);
    /// # let caller = qtalk::rpc::Caller::new(qtalk::mux::Session::new(a, Default::default()), qtalk::codec::Json);
    /// let authorized = caller.with_metadata("authorization", "Bearer s3cr3t");
    /// # let _ = authorized;
    /// # }
    /// ```
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Caller {
        let mut d = self.defaults.as_deref().cloned().unwrap_or_default();
        d.context.metadata_mut().insert(key, value);
        self.defaults = Some(Arc::new(d));
        self
    }

    /// This caller with a deadline `timeout` after the start of every call it makes (or the
    /// call's own, when earlier): [`Error::Timeout`] when it passes, and the responder learns
    /// it (see [`Call::deadline`](crate::rpc::Call::deadline)).
    pub fn with_timeout(mut self, timeout: Duration) -> Caller {
        let mut d = self.defaults.as_deref().cloned().unwrap_or_default();
        d.timeout = Some(timeout);
        self.defaults = Some(Arc::new(d));
        self
    }

    /// The context a call with `ctx` goes out with: `ctx` and this handle's defaults
    /// (borrowed, without a copy, in the common cases).
    fn effective<'a>(&'a self, ctx: &'a CallContext) -> std::borrow::Cow<'a, CallContext> {
        use std::borrow::Cow;
        let Some(d) = self.defaults.as_deref() else {
            return Cow::Borrowed(ctx);
        };
        let own = !ctx.metadata().is_empty() || ctx.deadline().is_some();
        if !own && d.timeout.is_none() {
            return Cow::Borrowed(&d.context);
        }
        let mut ctx = ctx.clone();
        for (k, v) in d.context.metadata().iter() {
            if ctx.metadata().get(k).is_none() {
                ctx.metadata_mut().insert(k, v);
            }
        }
        Cow::Owned(match d.timeout {
            Some(t) => ctx.with_timeout(t),
            None => ctx,
        })
    }

    /// A spare open young enough to use, if there is one (older ones are abandoned or closed).
    fn take_spare(&self) -> Option<PendingOpen> {
        let mut stale = Vec::new();
        let found = {
            let mut st = self.spares.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match st.ready.pop() {
                    Some((open, at)) if at.elapsed() <= self.options.spare_max_age => {
                        break Some(open)
                    }
                    Some((open, _)) => stale.push(open),
                    None => break None,
                }
            }
        };
        drop(stale);
        found
    }

    /// Opens no spare for a while (the peer refused one).
    fn pause_spares(&self) {
        let mut st = self.spares.state.lock().unwrap_or_else(|p| p.into_inner());
        st.paused_until = Some(std::time::Instant::now() + SPARE_PAUSE);
    }

    /// Starts opening spare channels up to [`Options::spare_channels`]: each open is polled
    /// once, which sends its OPEN, and kept for a later call.
    fn refill_spares(&self) {
        let wanted = self.options.spare_channels;
        if wanted == 0 || !self.session.open_needs_round_trip() {
            return;
        }
        let missing = {
            let st = self.spares.state.lock().unwrap_or_else(|p| p.into_inner());
            if st
                .paused_until
                .is_some_and(|t| std::time::Instant::now() < t)
            {
                return;
            }
            wanted.saturating_sub(st.ready.len())
        };
        for _ in 0..missing {
            let session = self.session.clone();
            let mut open: PendingOpen = Box::pin(async move { session.open().await });
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let started = std::time::Instant::now();
            // Polled before taking the lock: this poll writes the OPEN.
            let polled = open.as_mut().poll(&mut cx);
            let mut st = self.spares.state.lock().unwrap_or_else(|p| p.into_inner());
            match polled {
                Poll::Pending => st.ready.push((open, started)),
                Poll::Ready(Ok(ch)) => st
                    .ready
                    .push((Box::pin(std::future::ready(Ok(ch))), started)),
                Poll::Ready(Err(_)) => {
                    st.paused_until = Some(started + SPARE_PAUSE);
                    return;
                }
            }
        }
    }

    /// The callbacks registered on this caller's session (see
    /// [`Callback`](crate::rpc::Callback)).
    pub(crate) fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// The session calls are made on.
    pub fn session(&self) -> &qtalk_mux::Session {
        &self.session
    }

    /// The codec values are encoded with.
    pub fn codec(&self) -> &Arc<dyn Codec> {
        &self.codec
    }

    /// Calls `selector` with `args` and decodes the single reply value.
    ///
    /// A responder's error comes back as [`Error::Remote`]. Dropping the future abandons the
    /// call and closes its channel.
    pub async fn call<A, R>(&self, selector: &str, args: &A) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with(&NO_CONTEXT, selector, args).await
    }

    /// [`Caller::call`] with metadata and a deadline: the responder receives both; when the
    /// deadline passes the call fails with [`Error::Timeout`] and its channel is closed (the
    /// responder sees the call abandoned). A call already past its deadline is not sent.
    ///
    /// ```
    /// # async fn run(caller: qtalk::rpc::Caller) -> Result<(), qtalk::rpc::Error> {
    /// use qtalk::rpc::CallContext;
    /// let ctx = CallContext::new()
    ///     .with_metadata("authorization", "Bearer s3cr3t")
    ///     .with_timeout(std::time::Duration::from_secs(2));
    /// let upper: String = caller.call_with(&ctx, "Upper", &["hello"]).await?;
    /// # let _ = upper; Ok(())
    /// # }
    /// ```
    pub async fn call_with<A, R>(
        &self,
        ctx: &CallContext,
        selector: &str,
        args: &A,
    ) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let ctx = &*self.effective(ctx);
        let call = async {
            let ch = self.start(ctx, selector, Some(args)).await?;
            let mut resp = self.read_response(ch).await?;
            resp.receive().await
        };
        within_deadline(ctx, call).await
    }

    /// [`Caller::call`] with a deadline `timeout` from now (see [`Caller::call_with`]).
    pub async fn call_timeout<A, R>(
        &self,
        timeout: Duration,
        selector: &str,
        args: &A,
    ) -> Result<R, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let ctx = CallContext::new().with_timeout(timeout);
        self.call_with(&ctx, selector, args).await
    }

    /// Calls `selector` with `args` and returns the [`Response`] once its header arrived:
    /// receive several values from it, or use it as a byte stream when it continued.
    pub async fn call_raw<A>(&self, selector: &str, args: &A) -> Result<Response, Error>
    where
        A: Serialize + ?Sized,
    {
        self.call_raw_with(&NO_CONTEXT, selector, args).await
    }

    /// [`Caller::call_raw`] with metadata and a deadline. The deadline bounds the wait for
    /// the response header; the responder learns it and may stop streaming then.
    pub async fn call_raw_with<A>(
        &self,
        ctx: &CallContext,
        selector: &str,
        args: &A,
    ) -> Result<Response, Error>
    where
        A: Serialize + ?Sized,
    {
        let ctx = &*self.effective(ctx);
        let call = async {
            let ch = self.start(ctx, selector, Some(args)).await?;
            self.read_response(ch).await
        };
        within_deadline(ctx, call).await
    }

    /// Starts a call by sending only its header: stream argument values with
    /// [`Request::send`], end them with [`Request::close_write`], then await
    /// [`Request::response`].
    pub async fn request(&self, selector: &str) -> Result<Request, Error> {
        self.request_with(&NO_CONTEXT, selector).await
    }

    /// [`Caller::request`] with metadata and a deadline, which the responder learns (this
    /// side does not enforce it past sending the header: the request is in the caller's
    /// hands).
    pub async fn request_with(&self, ctx: &CallContext, selector: &str) -> Result<Request, Error> {
        let ctx = &*self.effective(ctx);
        let ch = within_deadline(ctx, self.start::<()>(ctx, selector, None)).await?;
        Ok(Request {
            ch,
            caller: self.clone(),
        })
    }

    /// The call of a tower request (see [`Caller::prepare`]).
    pub(crate) async fn call_outgoing(&self, req: Outgoing) -> Result<Response, Error> {
        if req.codec_name() != self.codec.name() {
            return Err(Error::Codec(crate::codec::CodecError::Encode(format!(
                "arguments prepared for codec {}, but the caller uses {}",
                req.codec_name(),
                self.codec.name()
            ))));
        }
        let ctx = &*self.effective(req.context());
        let call = async {
            let ch = self
                .start_encoded(ctx, req.selector(), Some(req.args()))
                .await?;
            self.read_response(ch).await
        };
        within_deadline(ctx, call).await
    }

    /// Opens the call's channel and sends the header (and the arguments, in the same write).
    async fn start<A>(
        &self,
        ctx: &CallContext,
        selector: &str,
        args: Option<&A>,
    ) -> Result<qtalk_mux::Channel, Error>
    where
        A: Serialize + ?Sized,
    {
        let mut buf = self.encode_header(ctx, selector)?;
        if let Some(args) = args {
            encode_frame(&*self.codec, args, &mut buf)?;
        }
        self.send_start(buf).await
    }

    /// [`Caller::start`] with arguments already encoded.
    async fn start_encoded(
        &self,
        ctx: &CallContext,
        selector: &str,
        args: Option<&bytes::Bytes>,
    ) -> Result<qtalk_mux::Channel, Error> {
        let mut buf = self.encode_header(ctx, selector)?;
        if let Some(args) = args {
            let len = u32::try_from(args.len()).map_err(|_| Error::FrameTooLarge {
                len: u32::MAX,
                max: u32::MAX,
            })?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(args);
        }
        self.send_start(buf).await
    }

    /// The call header frame: the selector, and the context's metadata and deadline when it
    /// has them. Refuses metadata over the limit and a call past its deadline.
    fn encode_header(&self, ctx: &CallContext, selector: &str) -> Result<BytesMut, Error> {
        let meta = ctx.metadata();
        let size = meta.size();
        if size > self.options.max_metadata {
            return Err(Error::MetadataTooLarge {
                size,
                max: self.options.max_metadata,
            });
        }
        let deadline = ctx.wire_deadline();
        if deadline == Some(0) {
            return Err(Error::Timeout);
        }
        let mut buf = BytesMut::with_capacity(SMALL_FRAMES);
        let header = CallHeaderRef {
            selector,
            meta,
            deadline,
        };
        encode_frame(&*self.codec, &header, &mut buf)?;
        Ok(buf)
    }

    async fn send_start(&self, buf: BytesMut) -> Result<qtalk_mux::Channel, Error> {
        let spare = self.take_spare();
        let mut ch = match spare {
            Some(open) => match open.await {
                Ok(ch) => ch,
                // Refused or failed: as any call would, open one of its own (and pause spares).
                Err(_) => {
                    self.pause_spares();
                    self.session.open().await?
                }
            },
            None => {
                // The next call's channel opens alongside this one's.
                self.refill_spares();
                self.session.open().await?
            }
        };
        let sent = match ch.write_bytes(buf.freeze()).await {
            Ok(()) => Ok(ch),
            // The responder closed the channel already; what it sent is read as the answer.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ch),
            Err(e) => Err(e.into()),
        };
        // The next call's channel opens behind this call's request, while it is answered.
        self.refill_spares();
        sent
    }

    async fn read_response(&self, mut ch: qtalk_mux::Channel) -> Result<Response, Error> {
        let mut reader = FrameReader::new(self.options.max_frame);
        let header: ResponseHeader = reader.receive(&*self.codec, &mut ch).await?;
        if let Some(e) = header.error {
            return Err(Error::Remote(e));
        }
        Ok(Response {
            header,
            ch,
            reader,
            codec: self.codec.clone(),
        })
    }
}

/// A call whose header was sent; more argument values may follow.
#[derive(Debug)]
pub struct Request {
    ch: qtalk_mux::Channel,
    caller: Caller,
}

impl Request {
    /// Sends one value to the responder.
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let mut buf = BytesMut::with_capacity(SMALL_FRAMES);
        encode_frame(&*self.caller.codec, value, &mut buf)?;
        Ok(self.ch.write_bytes(buf.freeze()).await?)
    }

    /// Ends the argument stream (sends EOF); the responder can still answer.
    pub fn close_write(&self) -> Result<(), Error> {
        Ok(self.ch.close_write()?)
    }

    /// The raw channel of this call (header already sent), as a byte stream: for relays that
    /// forward a call without decoding it.
    pub fn into_response_stream(self) -> qtalk_mux::Channel {
        self.ch
    }

    /// Waits for the response header.
    pub async fn response(self) -> Result<Response, Error> {
        self.caller.read_response(self.ch).await
    }
}

/// A response whose header arrived without an error.
///
/// Receive the reply values with [`Response::receive`]. When the responder continued, the
/// response is also a full-duplex byte stream (`AsyncRead` + `AsyncWrite`) and can exchange
/// further values with [`Response::send`] and [`Response::receive`]. Dropping it closes the
/// channel.
pub struct Response {
    header: ResponseHeader,
    ch: qtalk_mux::Channel,
    reader: FrameReader,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("header", &self.header)
            .field("channel", &self.ch.id())
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The response header.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// True when the responder kept the channel open after the reply.
    pub fn is_continued(&self) -> bool {
        self.header.is_continued()
    }

    /// Receives the next value.
    pub async fn receive<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        self.reader.receive(&*self.codec, &mut self.ch).await
    }

    /// Receives the next value, or `None` when the responder ended the stream.
    pub async fn receive_next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        match self.reader.next(&mut self.ch).await? {
            Some(body) => Ok(Some(crate::codec::decode(&*self.codec, &body)?)),
            None => Ok(None),
        }
    }

    /// Sends a value to the responder (after it continued).
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let mut buf = BytesMut::with_capacity(SMALL_FRAMES);
        encode_frame(&*self.codec, value, &mut buf)?;
        Ok(self.ch.write_bytes(buf.freeze()).await?)
    }

    /// Receives up to `max` raw bytes (after a continue) without copying them; `None` at
    /// end-of-stream. The zero-copy counterpart of `AsyncRead`.
    pub async fn read_chunk(&mut self, max: usize) -> std::io::Result<Option<bytes::Bytes>> {
        self.reader.read_chunk(&mut self.ch, max).await
    }

    /// Writes raw bytes (after a continue) without copying large buffers; returns once all of
    /// `data` is queued. The zero-copy counterpart of `AsyncWrite`.
    pub async fn write_bytes(&mut self, data: bytes::Bytes) -> std::io::Result<()> {
        self.ch.write_bytes(data).await
    }

    /// Sends EOF: the responder reads end-of-stream; this side can still read.
    pub fn close_write(&self) -> Result<(), Error> {
        Ok(self.ch.close_write()?)
    }

    /// Closes the channel.
    pub fn close(&self) -> Result<(), Error> {
        Ok(self.ch.close()?)
    }

    /// The underlying channel's id.
    pub fn channel_id(&self) -> qtalk_mux::ChannelId {
        self.ch.id()
    }

    /// Splits a (continued) response into its receiving and sending sides, which can be used
    /// at once from different tasks: full-duplex values or bytes. The channel closes once both
    /// are dropped.
    pub fn into_split(self) -> (ResponseReader, ResponseWriter) {
        let (r, w) = self.ch.into_split();
        (
            ResponseReader {
                header: self.header,
                r,
                reader: self.reader,
                codec: self.codec.clone(),
            },
            crate::rpc::Continued {
                w: crate::rpc::io::CallWriter::Channel(w),
                codec: self.codec,
            },
        )
    }
}

/// The receiving side of a [`Response`], from [`Response::into_split`]: reply values
/// ([`ResponseReader::receive`]) or raw bytes (`AsyncRead`).
pub struct ResponseReader {
    header: ResponseHeader,
    r: qtalk_mux::ReadHalf,
    reader: FrameReader,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for ResponseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseReader")
            .field("header", &self.header)
            .field("channel", &self.r.id())
            .finish_non_exhaustive()
    }
}

impl ResponseReader {
    /// The response header.
    pub fn header(&self) -> &ResponseHeader {
        &self.header
    }

    /// Receives the next value.
    pub async fn receive<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        self.reader.receive(&*self.codec, &mut self.r).await
    }

    /// Receives the next value, or `None` when the responder ended the stream.
    pub async fn receive_next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        match self.reader.next(&mut self.r).await? {
            Some(body) => Ok(Some(crate::codec::decode(&*self.codec, &body)?)),
            None => Ok(None),
        }
    }

    /// Receives up to `max` raw bytes without copying them (see [`Response::read_chunk`]).
    pub async fn read_chunk(&mut self, max: usize) -> std::io::Result<Option<bytes::Bytes>> {
        self.reader.read_chunk(&mut self.r, max).await
    }
}

impl AsyncRead for ResponseReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reader.has_buffered() {
            this.reader.drain_into(buf);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.r).poll_read(cx, buf)
    }
}

/// The sending side of a [`Response`], from [`Response::into_split`]: values
/// ([`Continued::send`](crate::rpc::Continued::send)) or raw bytes (`AsyncWrite`,
/// [`Continued::write_bytes`](crate::rpc::Continued::write_bytes); `shutdown` sends EOF). The
/// same type as the responder's side of a continued call.
pub type ResponseWriter = crate::rpc::Continued;

impl AsyncRead for Response {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reader.has_buffered() {
            this.reader.drain_into(buf);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.ch).poll_read(cx, buf)
    }
}

impl AsyncWrite for Response {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().ch).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ch).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ch).poll_shutdown(cx)
    }
}

/// `call`, unless the context's deadline passes first ([`Error::Timeout`]). A failure that
/// arrives once the deadline passed is a time-out too: the responder gave up at the same
/// deadline (see [`DEADLINE_EXCEEDED`](crate::rpc::DEADLINE_EXCEEDED)), and its answer may
/// come in before this side's timer fires.
async fn within_deadline<T>(
    ctx: &CallContext,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match ctx.deadline() {
        Some(at) => match tokio::time::timeout_at(at, call).await {
            Ok(Err(_)) if at <= tokio::time::Instant::now() => Err(Error::Timeout),
            Ok(result) => result,
            Err(_) => Err(Error::Timeout),
        },
        None => call.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_after_the_deadline_are_time_outs() {
        let passed = CallContext::new().with_deadline(tokio::time::Instant::now());
        let future = CallContext::new().with_timeout(Duration::from_secs(1));
        let remote = || std::future::ready(Err::<u8, _>(Error::Remote("x".into())));
        // An answer and a timer ready together: a failure is the deadline's.
        assert!(matches!(
            within_deadline(&passed, remote()).await,
            Err(Error::Timeout)
        ));
        // A value that made it is still delivered.
        assert_eq!(
            within_deadline(&passed, std::future::ready(Ok(7u8)))
                .await
                .unwrap(),
            7
        );
        // Before the deadline, a failure is what it is.
        assert!(matches!(
            within_deadline(&future, remote()).await,
            Err(Error::Remote(_))
        ));
        // No answer at all: the timer.
        assert!(matches!(
            within_deadline(&future, std::future::pending::<Result<u8, Error>>()).await,
            Err(Error::Timeout)
        ));
    }
}
