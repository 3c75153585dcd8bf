//! Channels: flow-controlled byte streams inside a session.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use qtalk_mux_proto::{ChannelId, ReadOutcome};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session::Owner;

/// The channel's id and session; releases the channel when dropped (the CLOSE it queues is
/// left to the session's writer task). Holding it keeps the session open.
struct Handle {
    shared: Arc<Owner>,
    id: ChannelId,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().proto.release(self.id);
    }
}

impl Handle {
    fn close_write(&self) -> io::Result<()> {
        let mut inner = self.shared.lock();
        let res = inner.proto.close_write(self.id);
        let res = res.map_err(|e| inner.channel_error(e));
        inner.flush();
        res
    }

    fn close(&self) -> io::Result<()> {
        let mut inner = self.shared.lock();
        let res = inner.proto.close(self.id);
        let res = res.map_err(|e| inner.channel_error(e));
        inner.flush();
        res
    }

    /// Ready once the peer sent CLOSE or the session ended.
    fn poll_peer_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.shared.lock();
        if inner.proto.is_closed_by_peer(self.id) || inner.proto.is_ended() {
            return Poll::Ready(());
        }
        inner.register_closed(self.id, cx);
        Poll::Pending
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut inner = self.shared.lock();
        let dst = buf.initialize_unfilled();
        match inner.proto.read(self.id, dst) {
            Ok(ReadOutcome::Data(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Ok(ReadOutcome::Eof) => Poll::Ready(Ok(())),
            Ok(ReadOutcome::Blocked) => {
                inner.register_read(self.id, cx);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(inner.channel_error(e))),
        }
    }

    fn poll_read_chunk(&self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<Option<Bytes>>> {
        let mut inner = self.shared.lock();
        match inner.proto.read_chunk(self.id, max.max(1)) {
            Ok(Some(b)) if b.is_empty() => {
                inner.register_read(self.id, cx);
                Poll::Pending
            }
            Ok(r) => Poll::Ready(Ok(r)),
            Err(e) => Poll::Ready(Err(inner.channel_error(e))),
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut inner = self.shared.lock();
        let res = match inner.proto.send(self.id, data) {
            Ok(0) => {
                inner.register_write(self.id, cx);
                Poll::Pending
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(inner.channel_error(e))),
        };
        inner.flush();
        res
    }

    fn poll_write_bytes(&self, cx: &mut Context<'_>, data: &mut Bytes) -> Poll<io::Result<()>> {
        self.poll_write_bytes_then(cx, data, false)
    }

    /// Queues `data`; with `close`, queues CLOSE behind its last part under the same lock, so
    /// both leave in one write.
    fn poll_write_bytes_then(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
        close: bool,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.shared.lock();
        let res = loop {
            if data.is_empty() {
                let closed = if close {
                    inner.proto.close(self.id)
                } else {
                    Ok(())
                };
                break Poll::Ready(closed.map_err(|e| inner.channel_error(e)));
            }
            match inner.proto.send_bytes(self.id, data) {
                Ok(0) => {
                    inner.register_write(self.id, cx);
                    break Poll::Pending;
                }
                Ok(_) => {}
                Err(e) => break Poll::Ready(Err(inner.channel_error(e))),
            }
        };
        inner.flush();
        res
    }
}

/// Completes once the peer closed a channel or its session ended (see
/// [`WriteHalf::peer_closed`]).
#[must_use = "futures do nothing unless polled"]
pub struct PeerClosed(Watch);

enum Watch {
    Mux(std::sync::Weak<Handle>),
    #[cfg(feature = "quic")]
    Quic(Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
    Done,
}

impl PeerClosed {
    /// A `PeerClosed` that is complete already (for a channel that is gone).
    pub fn done() -> PeerClosed {
        PeerClosed(Watch::Done)
    }
}

impl std::fmt::Debug for PeerClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClosed").finish_non_exhaustive()
    }
}

impl std::future::Future for PeerClosed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let res = match &mut this.0 {
            Watch::Mux(h) => match h.upgrade() {
                Some(h) => h.poll_peer_closed(cx),
                None => Poll::Ready(()),
            },
            #[cfg(feature = "quic")]
            Watch::Quic(f) => f.as_mut().poll(cx),
            Watch::Done => Poll::Ready(()),
        };
        if res.is_ready() {
            this.0 = Watch::Done;
        }
        res
    }
}

/// One channel of a [`Session`](crate::Session): a full-duplex, flow-controlled byte stream.
///
/// Reading returns end-of-stream once the peer sent EOF or CLOSE and everything buffered was
/// read. `poll_shutdown` (e.g. `AsyncWriteExt::shutdown`) and [`Channel::close_write`] send EOF;
/// [`Channel::close`] and dropping the channel send CLOSE. Data written before closing is
/// delivered: writes are queued in order behind the session's writer.
pub struct Channel {
    repr: Repr,
}

enum Repr {
    Mux(Handle),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicChannel),
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("id", &self.id()).finish()
    }
}

impl Channel {
    pub(crate) fn new(shared: Arc<Owner>, id: ChannelId) -> Self {
        Channel {
            repr: Repr::Mux(Handle { shared, id }),
        }
    }

    #[cfg(feature = "quic")]
    pub(crate) fn from_quic(ch: crate::quic::QuicChannel) -> Self {
        Channel {
            repr: Repr::Quic(ch),
        }
    }

    /// This side's id for the channel (the id the peer addresses it by); over QUIC, the stream
    /// id (its low 32 bits, as the reference).
    pub fn id(&self) -> ChannelId {
        match &self.repr {
            Repr::Mux(h) => h.id,
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.read.id(),
        }
    }

    /// Sends EOF: the peer reads end-of-stream after the data already written. The channel
    /// stays readable. Harmless when repeated or after close.
    pub fn close_write(&self) -> io::Result<()> {
        match &self.repr {
            Repr::Mux(h) => h.close_write(),
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.write.close_write(),
        }
    }

    /// Sends CLOSE: no more data may be written; data already written is still delivered.
    /// Buffered incoming data stays readable until the channel is dropped. Harmless when
    /// repeated.
    pub fn close(&self) -> io::Result<()> {
        match &self.repr {
            Repr::Mux(h) => h.close(),
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.write.close_write(),
        }
    }

    /// Bytes received and not yet read (always 0 over QUIC, which does not tell).
    pub fn buffered(&self) -> usize {
        match &self.repr {
            Repr::Mux(h) => h.shared.lock().proto.buffered(h.id),
            #[cfg(feature = "quic")]
            Repr::Quic(_) => 0,
        }
    }

    /// Receives the next chunk of up to `max` bytes without copying; `None` at end-of-stream.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match &mut self.repr {
            Repr::Mux(h) => std::future::poll_fn(|cx| h.poll_read_chunk(cx, max)).await,
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.read.read_chunk(max).await,
        }
    }

    /// Writes an owned buffer, without copying large payloads; returns once all of it is
    /// queued for sending.
    pub async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
        match &mut self.repr {
            Repr::Mux(h) => std::future::poll_fn(|cx| h.poll_write_bytes(cx, &mut data)).await,
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.write.write_bytes(data).await,
        }
    }

    /// Splits the channel into a reading and a writing half that can be used from different
    /// tasks. The channel is closed when both halves are dropped.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self.repr {
            Repr::Mux(h) => {
                let h = Arc::new(h);
                (
                    ReadHalf(ReadRepr::Mux(h.clone())),
                    WriteHalf(WriteRepr::Mux(h)),
                )
            }
            #[cfg(feature = "quic")]
            Repr::Quic(q) => (
                ReadHalf(ReadRepr::Quic(q.read)),
                WriteHalf(WriteRepr::Quic(q.write)),
            ),
        }
    }
}

impl AsyncRead for Channel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().repr {
            Repr::Mux(h) => h.poll_read(cx, buf),
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.read.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().repr {
            Repr::Mux(h) => h.poll_write(cx, data),
            #[cfg(feature = "quic")]
            Repr::Quic(q) => q.write.poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.close_write())
    }
}

/// The reading half of a [`Channel`], from [`Channel::into_split`].
pub struct ReadHalf(ReadRepr);

/// The writing half of a [`Channel`], from [`Channel::into_split`].
pub struct WriteHalf(WriteRepr);

enum ReadRepr {
    Mux(Arc<Handle>),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicReadHalf),
}

enum WriteRepr {
    Mux(Arc<Handle>),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicWriteHalf),
}

impl ReadHalf {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        match &self.0 {
            ReadRepr::Mux(h) => h.id,
            #[cfg(feature = "quic")]
            ReadRepr::Quic(q) => q.id(),
        }
    }

    /// Receives the next chunk of up to `max` bytes without copying; `None` at end-of-stream.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match &mut self.0 {
            ReadRepr::Mux(h) => std::future::poll_fn(|cx| h.poll_read_chunk(cx, max)).await,
            #[cfg(feature = "quic")]
            ReadRepr::Quic(q) => q.read_chunk(max).await,
        }
    }
}

impl WriteHalf {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        match &self.0 {
            WriteRepr::Mux(h) => h.id,
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => q.id(),
        }
    }

    /// Sends EOF (see [`Channel::close_write`]).
    pub fn close_write(&self) -> io::Result<()> {
        match &self.0 {
            WriteRepr::Mux(h) => h.close_write(),
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => q.close_write(),
        }
    }

    /// Sends CLOSE (see [`Channel::close`]).
    pub fn close(&self) -> io::Result<()> {
        match &self.0 {
            WriteRepr::Mux(h) => h.close(),
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => q.close_write(),
        }
    }

    /// A future that completes once the peer has closed the channel (it will read nothing more
    /// sent on it) or the session ended: what a responder watches to learn that its caller gave
    /// up. It holds no claim on the channel, and completes once the channel is released too.
    /// Over QUIC: the peer stopped the stream (`STOP_SENDING`), or the connection ended.
    pub fn peer_closed(&self) -> PeerClosed {
        PeerClosed(match &self.0 {
            WriteRepr::Mux(h) => Watch::Mux(Arc::downgrade(h)),
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => Watch::Quic(q.stopped()),
        })
    }

    /// Writes an owned buffer without copying large payloads.
    pub async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
        match &mut self.0 {
            WriteRepr::Mux(h) => std::future::poll_fn(|cx| h.poll_write_bytes(cx, &mut data)).await,
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => q.write_bytes(data).await,
        }
    }

    /// Writes an owned buffer and closes the channel right behind it (as
    /// [`close`](WriteHalf::close)); the data and the CLOSE leave in one write when the window
    /// allows, saving the peer a wake-up. Over QUIC: the data, then FIN.
    pub async fn write_bytes_and_close(&mut self, mut data: Bytes) -> io::Result<()> {
        match &mut self.0 {
            WriteRepr::Mux(h) => {
                std::future::poll_fn(|cx| h.poll_write_bytes_then(cx, &mut data, true)).await
            }
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => {
                q.write_bytes(data).await?;
                q.close_write()
            }
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            ReadRepr::Mux(h) => h.poll_read(cx, buf),
            #[cfg(feature = "quic")]
            ReadRepr::Quic(q) => q.poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            WriteRepr::Mux(h) => h.poll_write(cx, data),
            #[cfg(feature = "quic")]
            WriteRepr::Quic(q) => q.poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.close_write())
    }
}
