//! The QUIC mapping, written once for every base layer whose channels are the bidirectional
//! streams of one connection: QUIC itself (`quic.rs`) and WebTransport (`webtransport.rs`).
//!
//! A backend supplies a [`Connection`] (open, accept, close, closed) and its [`SendStream`] and
//! [`RecvStream`]; everything qtalk-specific is here, once:
//! - an opener writes one byte (`!`) so that the peer learns of the channel at once; the
//!   acceptor drops it before the application reads;
//! - EOF is the stream's FIN; dropping a channel finishes its sending side and stops its
//!   receiving side with code 42 when it was not read to the end;
//! - closing the session closes the connection with code 42 and reason `close connection`,
//!   once the peer acknowledged the data of the finished streams (for up to the close
//!   timeout): [`Unacked`] keeps those streams, the session's one task ([`deliver`]) waits.
//!
//! As h3's `quic` module, the traits are small and poll-shaped where the hot path is; a
//! further backend (another QUIC stack, WebRTC data channels) is one more implementation of
//! them plus one variant in `backend.rs`.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use qtalk_mux_proto::ChannelId;
use tokio::io::ReadBuf;

use crate::backend::{ChannelBackend, SessionBackend};
use crate::{Channel, Config, Error};

/// Application error code for closing a connection or stopping a stream, as the reference.
pub(crate) const CLOSE_CODE: u32 = 42;
/// Reason sent when a session closes; the reference's accept loop treats it as a clean end.
pub(crate) const CLOSE_REASON: &[u8] = b"close connection";
/// The byte that announces a new stream.
const OPEN_MARKER: u8 = b'!';

/// A future that completes once a sending stream needs no more keeping (see
/// [`SendStream::stopped`]).
pub(crate) type Stopped = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One connection whose bidirectional streams carry a session's channels.
pub(crate) trait Connection: Send + Sync + Sized + 'static {
    /// The sending side of a stream.
    type Send: SendStream;
    /// The receiving side of a stream.
    type Recv: RecvStream;

    /// Opens a stream, waiting while the peer's stream limit is reached.
    fn open_bi(&self) -> impl Future<Output = Result<(Self::Send, Self::Recv), Error>> + Send;

    /// The peer's next stream; `None` once the connection ended.
    fn accept_bi(&self) -> impl Future<Output = Option<(Self::Send, Self::Recv)>> + Send;

    /// Closes the connection now with an application code and reason.
    fn close(&self, code: u32, reason: &[u8]);

    /// Completes when the connection has ended, with why, in the session's terms.
    fn closed(&self) -> impl Future<Output = Error> + Send;

    /// True once the connection has ended.
    fn is_closed(&self) -> bool;

    /// After [`closed`](Connection::closed): gives the close a chance to reach the peer (for
    /// up to `limit`) where the backend would otherwise cut it off.
    fn drain(&self, limit: Duration) -> impl Future<Output = ()> + Send;

    /// This backend's variant of [`SessionBackend`].
    fn session_backend(session: Arc<StreamSession<Self>>) -> SessionBackend;

    /// This backend's variant of [`ChannelBackend`].
    fn channel_backend(channel: StreamChannel<Self>) -> ChannelBackend;
}

/// The sending side of a stream.
pub(crate) trait SendStream: Send + 'static {
    /// The stream's id on its connection.
    fn id(&self) -> u64;

    /// Writes some of `data`, as `AsyncWrite::poll_write`.
    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>>;

    /// Writes all of an owned buffer (without a copy where the backend can).
    fn write_chunk(&mut self, data: Bytes) -> impl Future<Output = io::Result<()>> + Send;

    /// Sends FIN after the data written; harmless when repeated.
    fn finish(&mut self);

    /// Completes once the peer stopped the stream, acknowledged all of its data, or the
    /// connection ended: then the stream needs no keeping. Independent of `self`.
    fn stopped(&self) -> Stopped;

    /// True when [`stopped`](SendStream::stopped) would complete at once.
    fn is_settled(&self) -> bool;
}

/// The receiving side of a stream.
pub(crate) trait RecvStream: Send + 'static {
    /// Reads into `buf`, as `AsyncRead::poll_read` (nothing filled: end of stream).
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>>;

    /// The next chunk of up to `max` bytes, without a copy; `None` at the end of the stream.
    fn read_chunk(&mut self, max: usize) -> impl Future<Output = io::Result<Option<Bytes>>> + Send;

    /// Asks the peer to stop sending, with an application code.
    fn stop(&mut self, code: u32);
}

/// A session over a [`Connection`]: what `backend.rs` holds for the QUIC-like variants.
pub(crate) struct StreamSession<C: Connection> {
    conn: C,
    config: Config,
    channels: Arc<AtomicUsize>,
    /// Streams whose data the peer has not acknowledged yet.
    unacked: Arc<Unacked<C::Send>>,
    /// `close` was called (the connection closes once `unacked` drained, or on time-out).
    closing: AtomicBool,
}

impl<C: Connection> StreamSession<C> {
    /// A session over `conn`, as a [`Session`](crate::Session). Must be called within a tokio
    /// runtime: it spawns the session's one task ([`deliver`]).
    pub(crate) fn start(conn: C, config: Config) -> crate::Session {
        let unacked = Arc::new(Unacked::new());
        let session = Arc::new(StreamSession {
            conn,
            config,
            channels: Arc::new(AtomicUsize::new(0)),
            unacked: unacked.clone(),
            closing: AtomicBool::new(false),
        });
        tokio::spawn(deliver(session.clone(), unacked));
        crate::Session::from_backend(C::session_backend(session))
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    fn channel(&self, send: C::Send, recv: C::Recv, accepted: bool) -> Channel {
        // The low 32 bits, as the reference.
        let id = ChannelId::new(send.id() as u32);
        let count = Arc::new(Counted::new(&self.channels));
        Channel::from_backend(C::channel_backend(StreamChannel {
            read: StreamRead {
                stream: recv,
                marker_pending: accepted,
                eof: false,
                id,
                _count: count.clone(),
            },
            write: StreamWrite {
                stream: Mutex::new(Some(send)),
                id,
                unacked: self.unacked.clone(),
                _count: count,
            },
        }))
    }

    pub(crate) async fn open(&self) -> Result<Channel, Error> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (mut send, recv) = self.conn.open_bi().await?;
        match poll_fn(|cx| send.poll_write(cx, &[OPEN_MARKER])).await {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(_) => {}
            // The peer stopped the stream before the byte went out (over WebTransport a
            // stream shows on its header, so it can be accepted and dropped that early): the
            // channel is open all the same, its writes fail as after any stop.
            Err(_) if !self.conn.is_closed() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.channel(send, recv, false))
    }

    pub(crate) async fn accept(&self) -> Option<Channel> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let (send, recv) = self.conn.accept_bi().await?;
        Some(self.channel(send, recv, true))
    }

    /// Closes the connection once the data of finished streams has been acknowledged (for up
    /// to the configured close timeout), as a qmux session delivers what was queued.
    pub(crate) fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.unacked.settle() {
            self.conn.close(CLOSE_CODE, CLOSE_REASON);
            return;
        }
        // The session's task closes once the finished streams are acknowledged.
        self.unacked.closing.notify_one();
    }

    pub(crate) async fn wait(&self) -> Error {
        let err = self.conn.closed().await;
        self.conn.drain(self.config.close_timeout).await;
        err
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.conn.is_closed()
    }

    pub(crate) fn channel_count(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
    }
}

/// Finished streams still delivering, so a close can wait for them as qmux's does. Dropped
/// write halves leave their streams here; nothing wakes per stream. A stream is let go once
/// the peer acknowledged its data or stopped it: at once when that is already so as its
/// channel drops, otherwise at the next pruning, which runs every [`PRUNE_EVERY`] streams
/// left here. A stream the peer stopped before it was finished carries no FIN; letting it go
/// resets it, which the peer needs to free it. One stopped later has its FIN queued and
/// within the peer's flow control, so the acknowledgements free it on both sides without us.
/// On `close`, the session's one task ([`deliver`]) waits for those still kept, then closes
/// the connection (or once the close timeout passed).
struct Unacked<S> {
    pending: Mutex<Pending<S>>,
    /// `close` was called.
    closing: tokio::sync::Notify,
}

/// See [`Unacked`].
struct Pending<S> {
    streams: Vec<S>,
    /// Prune when `streams` reaches this length.
    prune_at: usize,
}

/// How many streams may be left between two prunings of [`Unacked`].
const PRUNE_EVERY: usize = 32;

impl<S: SendStream> Pending<S> {
    /// Lets go of the settled streams.
    fn prune(&mut self) {
        self.streams.retain(|s| !s.is_settled());
        self.prune_at = self.streams.len() + PRUNE_EVERY;
    }
}

impl<S: SendStream> Unacked<S> {
    fn new() -> Self {
        Unacked {
            pending: Mutex::new(Pending {
                streams: Vec::new(),
                prune_at: PRUNE_EVERY,
            }),
            closing: tokio::sync::Notify::new(),
        }
    }

    /// Keeps a finished stream until its data was acknowledged.
    fn push(&self, stream: S) {
        if stream.is_settled() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if p.streams.len() >= p.prune_at {
            p.prune();
        }
        p.streams.push(stream);
    }

    /// Lets go of the settled streams; true when none is left.
    fn settle(&self) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.prune();
        p.streams.is_empty()
    }

    /// The streams still kept, taken.
    fn take(&self) -> Vec<S> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut p.streams)
    }
}

/// The session's one task: once `close` was called, waits for the acknowledgement of every
/// finished stream (see [`Unacked`]) for up to the close timeout, then closes the connection.
/// It ends with the connection.
async fn deliver<C: Connection>(session: Arc<StreamSession<C>>, unacked: Arc<Unacked<C::Send>>) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let closed = session.conn.closed();
    tokio::pin!(closed);
    tokio::select! {
        () = unacked.closing.notified() => {}
        _ = &mut closed => return,
    }
    let mut waiting: FuturesUnordered<_> = unacked
        .take()
        .into_iter()
        .map(|stream| {
            let stopped = stream.stopped();
            async move {
                stopped.await;
                drop(stream);
            }
        })
        .collect();
    let all = async { while waiting.next().await.is_some() {} };
    tokio::select! {
        _ = tokio::time::timeout(session.config.close_timeout, all) => {
            session.conn.close(CLOSE_CODE, CLOSE_REASON);
        }
        _ = &mut closed => {}
    }
}

/// Counts a live channel in its session until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A channel over one bidirectional stream.
pub(crate) struct StreamChannel<C: Connection> {
    pub(crate) read: StreamRead<C::Recv>,
    pub(crate) write: StreamWrite<C::Send>,
}

/// The receiving side of a channel's stream.
pub(crate) struct StreamRead<R: RecvStream> {
    stream: R,
    /// The opener's announcement byte has not been read yet.
    marker_pending: bool,
    eof: bool,
    id: ChannelId,
    _count: Arc<Counted>,
}

impl<R: RecvStream> StreamRead<R> {
    pub(crate) fn id(&self) -> ChannelId {
        self.id
    }

    /// Reads and drops the opener's announcement byte.
    fn poll_marker(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        ready!(self.stream.poll_read(cx, &mut buf))?;
        self.marker_pending = false;
        self.eof = buf.filled().is_empty();
        Poll::Ready(Ok(()))
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.marker_pending {
            ready!(self.poll_marker(cx))?;
        }
        if self.eof || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(self.stream.poll_read(cx, buf))?;
        self.eof = buf.filled().len() == before;
        Poll::Ready(Ok(()))
    }

    pub(crate) async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        if self.marker_pending {
            poll_fn(|cx| self.poll_marker(cx)).await?;
        }
        if self.eof {
            return Ok(None);
        }
        let chunk = self.stream.read_chunk(max.max(1)).await?;
        self.eof = chunk.is_none();
        Ok(chunk)
    }
}

impl<R: RecvStream> Drop for StreamRead<R> {
    fn drop(&mut self) {
        if !self.eof {
            self.stream.stop(CLOSE_CODE);
        }
    }
}

/// The sending side of a channel's stream.
pub(crate) struct StreamWrite<S: SendStream> {
    /// Locked only by `close_write` and `stopped`, which take `&self`; writes reach it
    /// through `get_mut`. `None` only while dropping.
    stream: Mutex<Option<S>>,
    id: ChannelId,
    unacked: Arc<Unacked<S>>,
    _count: Arc<Counted>,
}

impl<S: SendStream> Drop for StreamWrite<S> {
    /// Finishes the stream and, until the peer has acknowledged its data, keeps the session's
    /// close from cutting it off.
    fn drop(&mut self) {
        let stream = self
            .stream
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut stream) = stream else {
            return;
        };
        stream.finish();
        self.unacked.push(stream);
    }
}

impl<S: SendStream> StreamWrite<S> {
    pub(crate) fn id(&self) -> ChannelId {
        self.id
    }

    fn stream(&mut self) -> &mut S {
        self.stream
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .expect("present until dropped")
    }

    /// Completes once the peer stopped the stream or the connection ended.
    pub(crate) fn stopped(&self) -> Stopped {
        let guard = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(stream) => stream.stopped(),
            None => Box::pin(std::future::ready(())),
        }
    }

    /// Finishes the stream; harmless when repeated.
    pub(crate) fn close_write(&self) -> io::Result<()> {
        if let Some(stream) = self
            .stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
        {
            stream.finish();
        }
        Ok(())
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, data)
    }

    pub(crate) async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        self.stream().write_chunk(data).await
    }
}
