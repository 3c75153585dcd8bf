//! QUIC as the base layer: a [`Session`] whose channels are the bidirectional streams of one
//! QUIC connection, as the reference's `x/quic` package.
//!
//! No qmux frames travel: QUIC provides the channels, their flow control and their ends. Opening
//! a channel opens a stream and writes one byte (`!`) so the peer learns of it at once; the
//! accepting side drops that byte before the application reads. EOF finishes the stream's
//! sending side; dropping a channel also stops its receiving side (error code 42). Closing the
//! session closes the connection with error code 42 and reason `close connection`. TLS 1.3 is
//! mandatory; both sides offer the ALPN protocol [`ALPN`] (`qtalk-quic`) unless the given
//! rustls configuration names its own. See [`crate::tls`] for certificates.
//!
//! Clients dial through an [`Endpoint`] (one UDP socket per address family), by default the
//! one of their [`Config`], so that connections reuse a socket; every address a name resolves
//! to is tried. With the `webtransport` feature, a listener can serve WebTransport on the same
//! port ([`Listener::bind_webtransport`](crate::Listener::bind_webtransport)).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let identity = qtalk_mux::tls::self_signed(&["localhost"])?;
//! let server_tls = qtalk_mux::tls::server_config(identity.certs.clone(), identity.key)?;
//! let listener = qtalk_mux::Listener::bind_quic("127.0.0.1:0", server_tls, qtalk_mux::Config::default()).await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let session = listener.accept().await.unwrap();
//!     let mut ch = session.accept().await.unwrap();
//!     let mut msg = String::new();
//!     ch.read_to_string(&mut msg).await.unwrap();
//!     ch.write_all(msg.to_uppercase().as_bytes()).await.unwrap();
//!     ch.close_write().unwrap();
//!     session.wait().await;
//! });
//!
//! let client_tls = qtalk_mux::tls::client_config(identity.certs)?;
//! let session = qtalk_mux::quic::connect(addr, "localhost", client_tls, qtalk_mux::Config::default()).await?;
//! let mut ch = session.open().await?;
//! ch.write_all(b"hello").await?;
//! ch.close_write()?;
//! let mut reply = String::new();
//! ch.read_to_string(&mut reply).await?;
//! assert_eq!(reply, "HELLO");
//! session.close();
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use quinn::{ConnectionError, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::ToSocketAddrs;

use crate::backend::{ChannelBackend, SessionBackend};
use crate::streams::{self, StreamChannel, StreamSession};
use crate::{Config, Error, Session};

pub use endpoint::Endpoint;
pub use quinn;

mod endpoint;
mod listener;

#[cfg(feature = "webtransport")]
pub(crate) use endpoint::drain;
pub(crate) use listener::QuicListener;

/// The ALPN protocol both sides offer: `qtalk-quic`.
pub const ALPN: &[u8] = b"qtalk-quic";

/// The ALPN protocol of HTTP/3, which WebTransport runs on.
const ALPN_H3: &[u8] = b"h3";

/// Unidirectional streams a peer may open where HTTP/3 is offered: its control stream and
/// QPACK's two (RFC 9114 asks for at least 3). Elsewhere, none.
const HTTP3_UNI_STREAMS: u32 = 3;

/// Transport limits derived from the session configuration: the channel window is the stream
/// window, the memory budget (less the send buffer) is the connection's receive window, and
/// the channel limit bounds how many streams the peer may have open at once (QUIC makes the
/// peer wait for more, as qmux leaves its OPENs unconfirmed). With `http3` (HTTP/3 offered,
/// for WebTransport), the peer may open HTTP/3's unidirectional streams. No datagrams.
pub(crate) fn transport_config(config: &Config, http3: bool) -> quinn::TransportConfig {
    let window = u64::from(config.window_size());
    let budget = config
        .proto
        .memory_budget()
        .saturating_sub(config.proto.send_buffer())
        .max(config.window_size() as usize) as u64;
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(config.window_size()))
        .receive_window(VarInt::from_u64(budget).unwrap_or(VarInt::MAX))
        .send_window(window * 4)
        .max_concurrent_bidi_streams(VarInt::from_u32(
            u32::try_from(config.proto.max_channels()).unwrap_or(u32::MAX),
        ))
        .max_concurrent_uni_streams(VarInt::from_u32(if http3 { HTTP3_UNI_STREAMS } else { 0 }))
        .keep_alive_interval(Some(config.keep_alive))
        // Past QUIC's largest idle timeout (2^62 ms), none.
        .max_idle_timeout(config.idle_timeout.try_into().ok())
        // qtalk sends no datagrams, and nothing would read them: quinn's default keeps up to
        // 1.25 MB of them per connection. Browsers open WebTransport sessions without.
        .datagram_receive_buffer_size(None);
    t
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("quic: {e}"))
}

fn offers_http3(alpn: &[Vec<u8>]) -> bool {
    alpn.iter().any(|p| p == ALPN_H3)
}

/// quinn client settings from rustls settings (ALPN `qtalk-quic` unless one is set).
pub fn client_config(
    mut tls: rustls::ClientConfig,
    config: &Config,
) -> io::Result<quinn::ClientConfig> {
    if tls.alpn_protocols.is_empty() {
        tls.alpn_protocols = vec![ALPN.to_vec()];
    }
    let http3 = offers_http3(&tls.alpn_protocols);
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(invalid)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config(config, http3)));
    Ok(client)
}

/// quinn server settings from rustls settings (ALPN `qtalk-quic` unless one is set).
pub fn server_config(
    mut tls: rustls::ServerConfig,
    config: &Config,
) -> io::Result<quinn::ServerConfig> {
    if tls.alpn_protocols.is_empty() {
        tls.alpn_protocols = vec![ALPN.to_vec()];
    }
    let http3 = offers_http3(&tls.alpn_protocols);
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(invalid)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config, http3)));
    Ok(server)
}

/// Dials a QUIC server and runs a session over the connection. `server_name` is checked
/// against the server's certificate.
///
/// The connection goes through the configuration's [`Endpoint`] (one UDP socket per address
/// family, shared by the configuration's clones), and every address `addr` resolves to is
/// tried (see [`Endpoint`]).
pub async fn connect(
    addr: impl ToSocketAddrs,
    server_name: &str,
    tls: rustls::ClientConfig,
    config: Config,
) -> io::Result<Session> {
    let endpoint = config.quic_endpoint.clone();
    endpoint.connect(addr, server_name, tls, config).await
}

/// A client's session over a connection it dialed to `server_name`.
fn client_session(dialed: endpoint::Dialed, server_name: &str, config: Config) -> Session {
    let mut info =
        crate::conn_info::quic_info(&dialed.conn, Some(server_name), crate::TransportKind::Quic);
    if let Ok(a) = dialed.endpoint.local_addr() {
        info = info.with_local_addr(a);
    }
    StreamSession::start(
        QuicConnection {
            conn: dialed.conn,
            endpoint: Some(dialed.endpoint),
        },
        config,
    )
    .with_connection_info(info)
}

/// Runs a session over an established QUIC connection (either side).
///
/// Must be called within a tokio runtime: it spawns the session's one task, which waits for
/// the acknowledgement of finished streams (so that closing the session does not cut them off)
/// and ends with the connection.
pub fn over_connection(conn: quinn::Connection, config: Config) -> Session {
    let info = crate::conn_info::quic_info(&conn, None, crate::TransportKind::Quic);
    StreamSession::start(
        QuicConnection {
            conn,
            endpoint: None,
        },
        config,
    )
    .with_connection_info(info)
}

/// Why a connection ended, in the session's terms.
pub(crate) fn session_error(e: ConnectionError) -> Error {
    match e {
        ConnectionError::LocallyClosed => Error::Closed,
        ConnectionError::ApplicationClosed(_) => Error::PeerClosed,
        ConnectionError::TimedOut => Error::Timeout,
        other => Error::from(io::Error::from(other)),
    }
}

/// A QUIC connection carrying a session (see [`crate::streams`]).
pub(crate) struct QuicConnection {
    conn: quinn::Connection,
    /// The client's socket, for a clean close (see [`endpoint::drain`]).
    endpoint: Option<quinn::Endpoint>,
}

/// The QUIC variants of the backend enums.
pub(crate) type QuicSession = StreamSession<QuicConnection>;
pub(crate) type QuicChannel = StreamChannel<QuicConnection>;
pub(crate) type QuicReadHalf = streams::StreamRead<quinn::RecvStream>;
pub(crate) type QuicWriteHalf = streams::StreamWrite<quinn::SendStream>;

impl streams::Connection for QuicConnection {
    type Send = quinn::SendStream;
    type Recv = quinn::RecvStream;

    async fn open_bi(&self) -> Result<(quinn::SendStream, quinn::RecvStream), Error> {
        self.conn.open_bi().await.map_err(session_error)
    }

    async fn accept_bi(&self) -> Option<(quinn::SendStream, quinn::RecvStream)> {
        self.conn.accept_bi().await.ok()
    }

    fn close(&self, code: u32, reason: &[u8]) {
        self.conn.close(VarInt::from_u32(code), reason);
    }

    async fn closed(&self) -> Error {
        session_error(self.conn.closed().await)
    }

    fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    async fn drain(&self, limit: Duration) {
        if let Some(endpoint) = &self.endpoint {
            endpoint::drain(endpoint, limit).await;
        }
    }

    fn session_backend(session: Arc<QuicSession>) -> SessionBackend {
        SessionBackend::Quic(session)
    }

    fn channel_backend(channel: QuicChannel) -> ChannelBackend {
        ChannelBackend::Quic(channel)
    }
}

impl streams::SendStream for quinn::SendStream {
    fn id(&self) -> u64 {
        quinn::SendStream::id(self).into()
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(self), cx, data)
    }

    async fn write_chunk(&mut self, data: Bytes) -> io::Result<()> {
        quinn::SendStream::write_chunk(self, data)
            .await
            .map_err(io::Error::from)
    }

    fn finish(&mut self) {
        let _ = quinn::SendStream::finish(self);
    }

    fn stopped(&self) -> streams::Stopped {
        let stopped = quinn::SendStream::stopped(self);
        Box::pin(async move {
            let _ = stopped.await;
        })
    }

    fn is_settled(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let stopped = std::pin::pin!(quinn::SendStream::stopped(self));
        stopped.poll(&mut cx).is_ready()
    }
}

impl streams::RecvStream for quinn::RecvStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(self), cx, buf)
    }

    async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match quinn::RecvStream::read_chunk(self, max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(e.into()),
        }
    }

    fn stop(&mut self, code: u32) {
        let _ = quinn::RecvStream::stop(self, VarInt::from_u32(code));
    }
}
