//! The two sides of a responder's channel: a qmux channel's halves, or, for handlers tested
//! without a session ([`testing`](crate::rpc::testing)), memory.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::rpc::frame::ChunkSource;

/// What a [`Call`](crate::rpc::Call) reads from.
pub(crate) enum CallReader {
    Channel(qtalk_mux::ReadHalf),
    Memory(MemoryReader),
}

/// What a response is written to.
pub(crate) enum CallWriter {
    Channel(qtalk_mux::WriteHalf),
    Memory(MemoryWriter),
}

/// Input given up front: chunks, then end-of-stream.
pub(crate) struct MemoryReader {
    pub(crate) chunks: std::collections::VecDeque<Bytes>,
}

/// Everything a responder wrote, and how it ended its side; shared with the test.
#[derive(Default)]
pub(crate) struct MemorySink {
    pub(crate) out: Mutex<MemoryOut>,
    /// Cancelled by the test to play a caller that gave up.
    pub(crate) gone: CancellationToken,
}

#[derive(Default)]
pub(crate) struct MemoryOut {
    pub(crate) bytes: BytesMut,
    /// EOF sent (`close_write`, `shutdown`).
    pub(crate) eof: bool,
    /// The channel was closed (CLOSE, or the write side dropped).
    pub(crate) closed: bool,
}

pub(crate) struct MemoryWriter {
    pub(crate) sink: Arc<MemorySink>,
}

impl MemoryWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryOut> {
        self.sink.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, data: &[u8]) -> io::Result<()> {
        let mut out = self.lock();
        if out.eof || out.closed || self.sink.gone.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the channel is closed",
            ));
        }
        out.bytes.extend_from_slice(data);
        Ok(())
    }
}

impl Drop for MemoryWriter {
    fn drop(&mut self) {
        self.lock().closed = true;
    }
}

impl CallReader {
    pub(crate) fn id(&self) -> qtalk_mux::ChannelId {
        match self {
            CallReader::Channel(r) => r.id(),
            CallReader::Memory(_) => qtalk_mux::ChannelId::new(0),
        }
    }

    pub(crate) async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            CallReader::Channel(r) => r.read_chunk(max).await,
            CallReader::Memory(m) => Ok(m.chunks.pop_front().map(|mut c| {
                if c.len() > max.max(1) {
                    let rest = c.split_off(max.max(1));
                    m.chunks.push_front(rest);
                }
                c
            })),
        }
    }
}

impl ChunkSource for CallReader {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        self.read_chunk(usize::MAX).await
    }
}

impl AsyncRead for CallReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CallReader::Channel(r) => Pin::new(r).poll_read(cx, buf),
            CallReader::Memory(m) => {
                if let Some(c) = m.chunks.front_mut() {
                    let n = c.len().min(buf.remaining());
                    buf.put_slice(&c.split_to(n));
                    if c.is_empty() {
                        m.chunks.pop_front();
                    }
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl CallWriter {
    pub(crate) fn id(&self) -> qtalk_mux::ChannelId {
        match self {
            CallWriter::Channel(w) => w.id(),
            CallWriter::Memory(_) => qtalk_mux::ChannelId::new(0),
        }
    }

    pub(crate) async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            CallWriter::Channel(w) => w.write_bytes(data).await,
            CallWriter::Memory(m) => m.write(&data),
        }
    }

    pub(crate) async fn write_bytes_and_close(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            CallWriter::Channel(w) => w.write_bytes_and_close(data).await,
            CallWriter::Memory(m) => {
                m.write(&data)?;
                m.lock().closed = true;
                Ok(())
            }
        }
    }

    pub(crate) fn close_write(&self) -> io::Result<()> {
        match self {
            CallWriter::Channel(w) => w.close_write(),
            CallWriter::Memory(m) => {
                m.lock().eof = true;
                Ok(())
            }
        }
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        match self {
            CallWriter::Channel(w) => w.close(),
            CallWriter::Memory(m) => {
                m.lock().closed = true;
                Ok(())
            }
        }
    }

    /// Completes when the caller gave up on the call (see [`Call::cancelled`](crate::rpc::Call::cancelled)).
    pub(crate) fn peer_closed(&self) -> PeerGone {
        match self {
            CallWriter::Channel(w) => PeerGone::Channel(w.peer_closed()),
            CallWriter::Memory(m) => {
                PeerGone::Token(Box::pin(m.sink.gone.clone().cancelled_owned()))
            }
        }
    }
}

/// The caller's end of a call: its channel closed, or (in memory) the test said so.
pub(crate) enum PeerGone {
    Channel(qtalk_mux::PeerClosed),
    Token(Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>),
    Done,
}

impl std::future::Future for PeerGone {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            PeerGone::Channel(p) => Pin::new(p).poll(cx),
            PeerGone::Token(t) => t.as_mut().poll(cx),
            PeerGone::Done => Poll::Ready(()),
        }
    }
}

impl AsyncWrite for CallWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            CallWriter::Channel(w) => Pin::new(w).poll_write(cx, data),
            CallWriter::Memory(m) => Poll::Ready(m.write(data).map(|()| data.len())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CallWriter::Channel(w) => Pin::new(w).poll_flush(cx),
            CallWriter::Memory(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CallWriter::Channel(w) => Pin::new(w).poll_shutdown(cx),
            CallWriter::Memory(m) => {
                m.lock().eof = true;
                Poll::Ready(Ok(()))
            }
        }
    }
}
