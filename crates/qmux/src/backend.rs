//! The one dispatch point between the public [`Session`](crate::Session) and
//! [`Channel`](crate::Channel) types and the base layers that carry them: qmux framing over a
//! byte stream (`mux/`, `channel.rs`), or the bidirectional streams of one connection,
//! mapped once in `streams.rs` over a small stream-provider trait that QUIC (`quic.rs`)
//! implements.
//!
//! Closed enums rather than trait objects: no allocation or indirect call per channel
//! operation, and every backend difference is an exhaustive `match` here, in one file. Another
//! stream-based base layer is one implementation of `streams::Connection` (its module beside
//! `quic.rs`) and one more variant in each enum below; nothing above this crate changes. Where
//! a backend cannot match qmux's semantics, ARCHITECTURE.md has the table.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use qtalk_mux_proto::ChannelId;
use tokio::io::ReadBuf;

use crate::channel::Handle;
use crate::mux::{self, Owner};
use crate::{Channel, Config, Error};

/// What carries a session's channels.
#[derive(Clone)]
pub(crate) enum SessionBackend {
    Mux(Arc<Owner>),
    #[cfg(feature = "quic")]
    Quic(Arc<crate::quic::QuicSession>),
    #[cfg(feature = "webtransport")]
    WebTransport(Arc<crate::webtransport::WtSession>),
}

impl SessionBackend {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            SessionBackend::Mux(_) => "qmux",
            #[cfg(feature = "quic")]
            SessionBackend::Quic(_) => "quic",
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(_) => "webtransport",
        }
    }

    pub(crate) fn config(&self) -> &Config {
        match self {
            SessionBackend::Mux(owner) => owner.config(),
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.config(),
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.config(),
        }
    }

    pub(crate) async fn open(&self) -> Result<Channel, Error> {
        match self {
            SessionBackend::Mux(owner) => mux::open_mux(owner).await,
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.open().await,
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.open().await,
        }
    }

    pub(crate) async fn accept(&self) -> Option<Channel> {
        match self {
            SessionBackend::Mux(owner) => mux::accept_mux(owner).await,
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.accept().await,
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.accept().await,
        }
    }

    pub(crate) fn close(&self) {
        match self {
            SessionBackend::Mux(owner) => mux::close_mux(owner),
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.close(),
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.close(),
        }
    }

    pub(crate) async fn wait(&self) -> Error {
        match self {
            SessionBackend::Mux(owner) => mux::wait_mux(owner).await,
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.wait().await,
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.wait().await,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            SessionBackend::Mux(owner) => owner.is_ended(),
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.is_closed(),
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.is_closed(),
        }
    }

    pub(crate) fn open_needs_round_trip(&self) -> bool {
        match self {
            SessionBackend::Mux(_) => true,
            #[cfg(feature = "quic")]
            SessionBackend::Quic(_) => false,
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(_) => false,
        }
    }

    pub(crate) fn channel_count(&self) -> usize {
        match self {
            SessionBackend::Mux(owner) => owner.lock().proto.channel_count(),
            #[cfg(feature = "quic")]
            SessionBackend::Quic(quic) => quic.channel_count(),
            #[cfg(feature = "webtransport")]
            SessionBackend::WebTransport(wt) => wt.channel_count(),
        }
    }
}

/// What carries one channel.
pub(crate) enum ChannelBackend {
    Mux(Handle),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicChannel),
    #[cfg(feature = "webtransport")]
    WebTransport(crate::webtransport::WtChannel),
}

impl ChannelBackend {
    pub(crate) fn id(&self) -> ChannelId {
        match self {
            ChannelBackend::Mux(h) => h.id,
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.read.id(),
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.read.id(),
        }
    }

    pub(crate) fn close_write(&self) -> io::Result<()> {
        match self {
            ChannelBackend::Mux(h) => h.close_write(),
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.write.close_write(),
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.write.close_write(),
        }
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        match self {
            ChannelBackend::Mux(h) => h.close(),
            // FIN; the rest of the close happens when the stream is dropped.
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.write.close_write(),
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.write.close_write(),
        }
    }

    pub(crate) fn buffered(&self) -> usize {
        match self {
            ChannelBackend::Mux(h) => h.shared.lock().proto.buffered(h.id),
            // quinn does not tell.
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(_) => 0,
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(_) => 0,
        }
    }

    pub(crate) async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            ChannelBackend::Mux(h) => std::future::poll_fn(|cx| h.poll_read_chunk(cx, max)).await,
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.read.read_chunk(max).await,
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.read.read_chunk(max).await,
        }
    }

    pub(crate) async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
        match self {
            ChannelBackend::Mux(h) => {
                std::future::poll_fn(|cx| h.poll_write_bytes(cx, &mut data)).await
            }
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.write.write_bytes(data).await,
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.write.write_bytes(data).await,
        }
    }

    pub(crate) fn into_split(self) -> (ReadBackend, WriteBackend) {
        match self {
            ChannelBackend::Mux(h) => {
                let h = Arc::new(h);
                (ReadBackend::Mux(h.clone()), WriteBackend::Mux(h))
            }
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => (ReadBackend::Quic(q.read), WriteBackend::Quic(q.write)),
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => (
                ReadBackend::WebTransport(q.read),
                WriteBackend::WebTransport(q.write),
            ),
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            ChannelBackend::Mux(h) => h.poll_read(cx, buf),
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.read.poll_read(cx, buf),
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.read.poll_read(cx, buf),
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            ChannelBackend::Mux(h) => h.poll_write(cx, data),
            #[cfg(feature = "quic")]
            ChannelBackend::Quic(q) => q.write.poll_write(cx, data),
            #[cfg(feature = "webtransport")]
            ChannelBackend::WebTransport(q) => q.write.poll_write(cx, data),
        }
    }
}

/// What carries a channel's reading half.
pub(crate) enum ReadBackend {
    Mux(Arc<Handle>),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicReadHalf),
    #[cfg(feature = "webtransport")]
    WebTransport(crate::webtransport::WtReadHalf),
}

impl ReadBackend {
    pub(crate) fn id(&self) -> ChannelId {
        match self {
            ReadBackend::Mux(h) => h.id,
            #[cfg(feature = "quic")]
            ReadBackend::Quic(q) => q.id(),
            #[cfg(feature = "webtransport")]
            ReadBackend::WebTransport(q) => q.id(),
        }
    }

    pub(crate) async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match self {
            ReadBackend::Mux(h) => std::future::poll_fn(|cx| h.poll_read_chunk(cx, max)).await,
            #[cfg(feature = "quic")]
            ReadBackend::Quic(q) => q.read_chunk(max).await,
            #[cfg(feature = "webtransport")]
            ReadBackend::WebTransport(q) => q.read_chunk(max).await,
        }
    }

    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self {
            ReadBackend::Mux(h) => h.poll_read(cx, buf),
            #[cfg(feature = "quic")]
            ReadBackend::Quic(q) => q.poll_read(cx, buf),
            #[cfg(feature = "webtransport")]
            ReadBackend::WebTransport(q) => q.poll_read(cx, buf),
        }
    }
}

/// What carries a channel's writing half.
pub(crate) enum WriteBackend {
    Mux(Arc<Handle>),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicWriteHalf),
    #[cfg(feature = "webtransport")]
    WebTransport(crate::webtransport::WtWriteHalf),
}

impl WriteBackend {
    pub(crate) fn id(&self) -> ChannelId {
        match self {
            WriteBackend::Mux(h) => h.id,
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => q.id(),
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => q.id(),
        }
    }

    pub(crate) fn close_write(&self) -> io::Result<()> {
        match self {
            WriteBackend::Mux(h) => h.close_write(),
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => q.close_write(),
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => q.close_write(),
        }
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        match self {
            WriteBackend::Mux(h) => h.close(),
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => q.close_write(),
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => q.close_write(),
        }
    }

    pub(crate) fn peer_closed(&self) -> Watch {
        match self {
            WriteBackend::Mux(h) => Watch::Mux(Arc::downgrade(h)),
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => Watch::Stream(q.stopped()),
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => Watch::Stream(q.stopped()),
        }
    }

    pub(crate) async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
        match self {
            WriteBackend::Mux(h) => {
                std::future::poll_fn(|cx| h.poll_write_bytes(cx, &mut data)).await
            }
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => q.write_bytes(data).await,
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => q.write_bytes(data).await,
        }
    }

    pub(crate) async fn write_bytes_and_close(&mut self, mut data: Bytes) -> io::Result<()> {
        match self {
            WriteBackend::Mux(h) => {
                std::future::poll_fn(|cx| h.poll_write_bytes_then(cx, &mut data, true)).await
            }
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => {
                q.write_bytes(data).await?;
                q.close_write()
            }
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => {
                q.write_bytes(data).await?;
                q.close_write()
            }
        }
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self {
            WriteBackend::Mux(h) => h.poll_write(cx, data),
            #[cfg(feature = "quic")]
            WriteBackend::Quic(q) => q.poll_write(cx, data),
            #[cfg(feature = "webtransport")]
            WriteBackend::WebTransport(q) => q.poll_write(cx, data),
        }
    }
}

/// What [`PeerClosed`](crate::PeerClosed) watches.
pub(crate) enum Watch {
    /// The channel, without keeping it: gone means released.
    Mux(std::sync::Weak<Handle>),
    #[cfg(feature = "quic")]
    Stream(crate::streams::Stopped),
    Done,
}

impl Watch {
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self {
            Watch::Mux(h) => match h.upgrade() {
                Some(h) => h.poll_peer_closed(cx),
                None => Poll::Ready(()),
            },
            #[cfg(feature = "quic")]
            Watch::Stream(f) => f.as_mut().poll(cx),
            Watch::Done => Poll::Ready(()),
        }
    }
}
