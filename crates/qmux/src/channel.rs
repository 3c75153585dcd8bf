//! Channels: flow-controlled byte streams inside a session.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use qtalk_mux_proto::{ChannelId, ReadOutcome};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::backend::{ChannelBackend, ReadBackend, Watch, WriteBackend};
use crate::mux::Owner;

/// A qmux channel: its id and session; releases the channel when dropped (the CLOSE it
/// queues is left to the session's writer task). Holding it keeps the session open.
pub(crate) struct Handle {
    pub(crate) shared: Arc<Owner>,
    pub(crate) id: ChannelId,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().proto.release(self.id);
    }
}

impl Handle {
    pub(crate) fn close_write(&self) -> io::Result<()> {
        let mut inner = self.shared.lock();
        let res = inner.proto.close_write(self.id);
        let res = res.map_err(|e| inner.channel_error(e));
        inner.flush();
        res
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        let mut inner = self.shared.lock();
        let res = inner.proto.close(self.id);
        let res = res.map_err(|e| inner.channel_error(e));
        inner.flush();
        res
    }

    /// Ready once the peer sent CLOSE or the session ended.
    pub(crate) fn poll_peer_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.shared.lock();
        if inner.proto.is_closed_by_peer(self.id) || inner.proto.is_ended() {
            return Poll::Ready(());
        }
        inner.register_closed(self.id, cx);
        Poll::Pending
    }

    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
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

    pub(crate) fn poll_read_chunk(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Option<Bytes>>> {
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

    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
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

    pub(crate) fn poll_write_bytes(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
    ) -> Poll<io::Result<()>> {
        self.poll_write_bytes_then(cx, data, false)
    }

    /// Queues `data`; with `close`, queues CLOSE behind its last part under the same lock, so
    /// both leave in one write.
    pub(crate) fn poll_write_bytes_then(
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
pub struct PeerClosed(pub(crate) Watch);

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
        let res = this.0.poll(cx);
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
    backend: ChannelBackend,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("id", &self.id()).finish()
    }
}

impl Channel {
    pub(crate) fn from_backend(backend: ChannelBackend) -> Self {
        Channel { backend }
    }

    /// This side's id for the channel (the id the peer addresses it by); over QUIC, the stream
    /// id (its low 32 bits, as the reference).
    pub fn id(&self) -> ChannelId {
        self.backend.id()
    }

    /// Sends EOF: the peer reads end-of-stream after the data already written. The channel
    /// stays readable. Harmless when repeated or after close.
    pub fn close_write(&self) -> io::Result<()> {
        self.backend.close_write()
    }

    /// Sends CLOSE: no more data may be written; data already written is still delivered.
    /// Buffered incoming data stays readable until the channel is dropped. Harmless when
    /// repeated.
    pub fn close(&self) -> io::Result<()> {
        self.backend.close()
    }

    /// Bytes received and not yet read (always 0 over QUIC, which does not tell).
    pub fn buffered(&self) -> usize {
        self.backend.buffered()
    }

    /// Receives the next chunk of up to `max` bytes without copying; `None` at end-of-stream.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.backend.read_chunk(max).await
    }

    /// Writes an owned buffer, without copying large payloads; returns once all of it is
    /// queued for sending.
    pub async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        self.backend.write_bytes(data).await
    }

    /// Splits the channel into a reading and a writing half that can be used from different
    /// tasks. The channel is closed when both halves are dropped.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        let (r, w) = self.backend.into_split();
        (ReadHalf(r), WriteHalf(w))
    }
}

impl AsyncRead for Channel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().backend.poll_read(cx, buf)
    }
}

impl AsyncWrite for Channel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().backend.poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.close_write())
    }
}

/// The reading half of a [`Channel`], from [`Channel::into_split`].
pub struct ReadHalf(ReadBackend);

/// The writing half of a [`Channel`], from [`Channel::into_split`].
pub struct WriteHalf(WriteBackend);

impl ReadHalf {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        self.0.id()
    }

    /// Receives the next chunk of up to `max` bytes without copying; `None` at end-of-stream.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        self.0.read_chunk(max).await
    }
}

impl WriteHalf {
    /// The channel's id.
    pub fn id(&self) -> ChannelId {
        self.0.id()
    }

    /// Sends EOF (see [`Channel::close_write`]).
    pub fn close_write(&self) -> io::Result<()> {
        self.0.close_write()
    }

    /// Sends CLOSE (see [`Channel::close`]).
    pub fn close(&self) -> io::Result<()> {
        self.0.close()
    }

    /// A future that completes once the peer has closed the channel (it will read nothing more
    /// sent on it) or the session ended: what a responder watches to learn that its caller gave
    /// up. It holds no claim on the channel, and completes once the channel is released too.
    /// Over QUIC: the peer stopped the stream (`STOP_SENDING`), or the connection ended.
    pub fn peer_closed(&self) -> PeerClosed {
        PeerClosed(self.0.peer_closed())
    }

    /// Writes an owned buffer without copying large payloads.
    pub async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        self.0.write_bytes(data).await
    }

    /// Writes an owned buffer and closes the channel right behind it (as
    /// [`close`](WriteHalf::close)); the data and the CLOSE leave in one write when the window
    /// allows, saving the peer a wake-up. Over QUIC: the data, then FIN.
    pub async fn write_bytes_and_close(&mut self, data: Bytes) -> io::Result<()> {
        self.0.write_bytes_and_close(data).await
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().0.poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.close_write())
    }
}
