//! WebTransport as the base layer: a [`Session`] whose channels are the bidirectional streams
//! of one WebTransport session, as a browser opens them with `new WebTransport(url)`.
//!
//! WebTransport is QUIC's browser API: an HTTP/3 connection (ALPN `h3`) whose first request,
//! an extended CONNECT, opens a session; its streams are QUIC streams with a short header.
//! qtalk maps channels onto them exactly as over plain QUIC ([`crate::quic`]): the opener's
//! first byte is `!`, EOF is the stream's FIN, a channel dropped unread stops the stream with
//! code 42, and closing the session closes it with code 42 and reason `close connection`
//! (WebTransport carries the codes in its own range of HTTP/3 codes; a browser reads them
//! back as 42). A browser client writes `!` on each stream it opens, and skips the `!` of
//! each stream it accepts.
//!
//! Feature `webtransport` (implies `quic`; needs Rust 1.91, for web-transport-quinn).
//!
//! Servers: [`Listener::bind_webtransport`](crate::Listener::bind_webtransport) serves
//! WebTransport and `quic://` clients on one UDP port, each connection dispatched by the ALPN
//! protocol it negotiated (`h3` or `qtalk-quic`). Every URL path is accepted. Clients:
//! [`connect`] dials an `https://HOST:PORT/PATH` URL.
//!
//! # Certificates
//!
//! Browsers check a WebTransport server's certificate as for any `https://` page: in
//! production, a certificate from a CA they trust, for the server's name. For development
//! there is a second way, without a CA: the page names the SHA-256 hash of the server's
//! certificate in `serverCertificateHashes`. Browsers accept such a certificate only if it is
//! ECDSA P-256 (not RSA, not Ed25519) and its whole validity period is at most 14 days:
//! [`tls::self_signed_for_browsers`](crate::tls::self_signed_for_browsers) makes one, and
//! [`tls::CertificateHash`](crate::tls::CertificateHash) is what the page needs. Rotate it
//! before it expires: a new certificate has a new hash, which the page must be given (pages
//! may list the old and the new hash meanwhile). A server that runs longer than that gives
//! its listener TLS settings whose certificate resolver (rustls' `ResolvesServerCert`) hands
//! out the current certificate. Rust clients can pin hashes the same way with
//! [`tls::hash_pinned_client_config`](crate::tls::hash_pinned_client_config).
//!
//! In production, use the certificate of the site (from a CA browsers trust, for the server's
//! name: [`tls::load_certs`](crate::tls::load_certs), [`tls::load_key`](crate::tls::load_key)),
//! and open UDP on the port, not only TCP; pages then connect by name with no hash.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use qtalk_mux::tls;
//!
//! let identity = tls::self_signed_for_browsers(&["localhost"])?;
//! let hash = tls::CertificateHash::of(&identity.certs[0]);
//! let server_tls = tls::server_config(identity.certs, identity.key)?;
//! let listener = qtalk_mux::Listener::bind_webtransport("127.0.0.1:0", server_tls, Default::default()).await?;
//! let port = listener.local_addr()?.port();
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
//! // As a browser would with `serverCertificateHashes`.
//! let client_tls = tls::hash_pinned_client_config([hash])?;
//! let url = format!("https://localhost:{port}/");
//! let session = qtalk_mux::webtransport::connect(&url, client_tls, Default::default()).await?;
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

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::future::{FutureExt, Shared};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use web_transport_quinn as wt;

use crate::backend::{ChannelBackend, SessionBackend};
use crate::streams::{self, StreamChannel, StreamSession};
use crate::{Config, Error, Session};

/// The ALPN protocol of WebTransport's HTTP/3: `h3`.
pub const ALPN: &[u8] = b"h3";

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("webtransport: {e}"))
}

fn failed(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("webtransport: {e}"),
    )
}

/// Opens a WebTransport session at `url` (`https://HOST:PORT/PATH`, port 443 by default) and
/// runs a session over it. The server's certificate is checked by `tls` against `HOST` (or,
/// with [`tls::hash_pinned_client_config`](crate::tls::hash_pinned_client_config), against
/// its hash alone); ALPN is always `h3`.
///
/// As [`quic::connect`](crate::quic::connect), the connection goes through the
/// configuration's [`quic::Endpoint`](crate::quic::Endpoint) and every address `HOST`
/// resolves to is tried. The HTTP/3 exchange that opens the session must finish within the
/// configuration's handshake timeout.
pub async fn connect(
    url: &str,
    mut tls: rustls::ClientConfig,
    config: Config,
) -> io::Result<Session> {
    let url = url::Url::parse(url).map_err(|e| invalid(format!("{url:?}: {e}")))?;
    if url.scheme() != "https" {
        return Err(invalid(format!("{url}: the URL must be https://")));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let (host, name) = match url.host() {
        Some(url::Host::Domain(d)) => (d.to_string(), d.to_string()),
        Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.to_string()),
        Some(url::Host::Ipv6(ip)) => (ip.to_string(), ip.to_string()),
        None => return Err(invalid(format!("{url}: no host"))),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let client = crate::quic::client_config(tls, &config)?;
    let endpoint = config.quic_endpoint.clone();
    let dialed = endpoint
        .dial((host.as_str(), port), &name, client, &config)
        .await?;
    let mut info = crate::conn_info::quic_info(
        &dialed.conn,
        Some(&name),
        crate::TransportKind::WebTransport,
    )
    .with_upgrade_request(crate::UpgradeRequest::new(&path_and_query(&url)));
    let request = wt::proto::ConnectRequest::new(url);
    if let Ok(a) = dialed.endpoint.local_addr() {
        info = info.with_local_addr(a);
    }
    let session = tokio::time::timeout(
        config.handshake_timeout,
        wt::Session::connect(dialed.conn, request),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "webtransport: CONNECT timed out"))?
    .map_err(failed)?;
    Ok(StreamSession::start(
        WtConnection {
            session,
            endpoint: Some(dialed.endpoint),
        },
        config,
    )
    .with_connection_info(info))
}

/// The path and query of `url`, as a WebTransport CONNECT request carries them.
fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// The server side of a connection that negotiated `h3`: HTTP/3's settings, then the
/// CONNECT request (for any path), answered 200; a session over it.
pub(crate) async fn accept(conn: quinn::Connection, config: Config) -> io::Result<Session> {
    let info = crate::conn_info::quic_info(&conn, None, crate::TransportKind::WebTransport);
    let request = wt::Request::accept(conn).await.map_err(failed)?;
    // The path and query are how a browser passes a token (`new WebTransport(url)` sends no
    // other header a page controls).
    let info = info.with_upgrade_request(crate::UpgradeRequest::new(&path_and_query(&request.url)));
    tracing::debug!(url = %request.url, "qmux: WebTransport session");
    let session = request.ok().await.map_err(failed)?;
    Ok(StreamSession::start(
        WtConnection {
            session,
            endpoint: None,
        },
        config,
    )
    .with_connection_info(info))
}

/// Why a session ended, in the session's terms.
fn session_error(e: wt::SessionError) -> Error {
    match e {
        wt::SessionError::ConnectionError(e) => crate::quic::session_error(e),
        wt::SessionError::WebTransportError(wt::WebTransportError::Closed(..)) => Error::PeerClosed,
        other => Error::from(io::Error::other(other)),
    }
}

fn read_error(e: wt::ReadError) -> io::Error {
    let kind = match &e {
        wt::ReadError::Reset(_) | wt::ReadError::InvalidReset(_) => io::ErrorKind::ConnectionReset,
        wt::ReadError::SessionError(_) => io::ErrorKind::NotConnected,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

/// A WebTransport session carrying a qtalk session (see [`crate::streams`]).
pub(crate) struct WtConnection {
    session: wt::Session,
    /// The client's socket, for a clean close.
    endpoint: Option<quinn::Endpoint>,
}

/// The WebTransport variants of the backend enums.
pub(crate) type WtSession = StreamSession<WtConnection>;
pub(crate) type WtChannel = StreamChannel<WtConnection>;
pub(crate) type WtReadHalf = streams::StreamRead<wt::RecvStream>;
pub(crate) type WtWriteHalf = streams::StreamWrite<WtSend>;

impl streams::Connection for WtConnection {
    type Send = WtSend;
    type Recv = wt::RecvStream;

    async fn open_bi(&self) -> Result<(WtSend, wt::RecvStream), Error> {
        let (send, recv) = self.session.open_bi().await.map_err(session_error)?;
        Ok((WtSend::new(send), recv))
    }

    async fn accept_bi(&self) -> Option<(WtSend, wt::RecvStream)> {
        let (send, recv) = self.session.accept_bi().await.ok()?;
        Some((WtSend::new(send), recv))
    }

    fn close(&self, code: u32, reason: &[u8]) {
        self.session.close(code, reason);
    }

    async fn closed(&self) -> Error {
        session_error(self.session.closed().await)
    }

    fn is_closed(&self) -> bool {
        self.session.close_reason().is_some()
    }

    async fn drain(&self, limit: Duration) {
        if let Some(endpoint) = &self.endpoint {
            crate::quic::drain(endpoint, limit).await;
        }
    }

    fn session_backend(session: Arc<WtSession>) -> SessionBackend {
        SessionBackend::WebTransport(session)
    }

    fn channel_backend(channel: WtChannel) -> ChannelBackend {
        ChannelBackend::WebTransport(channel)
    }
}

/// The sending side of a WebTransport stream, shared with the future that watches for its
/// end: web-transport-quinn's `stopped` borrows the stream, so the watch polls it through
/// the same lock as writes, and one [`Shared`] future fans its completion out to every
/// watcher (a session close, `peer_closed`).
pub(crate) struct WtSend {
    stream: Arc<Mutex<wt::SendStream>>,
    id: u64,
    stopped: Shared<streams::Stopped>,
}

impl WtSend {
    fn new(stream: wt::SendStream) -> Self {
        let id = stream.quic_id().into();
        let stream = Arc::new(Mutex::new(stream));
        let watched = stream.clone();
        let stopped: streams::Stopped = Box::pin(poll_fn(move |cx| {
            use wt::generic::poll::SendStream as _;
            let mut stream = watched.lock().unwrap_or_else(PoisonError::into_inner);
            stream.poll_closed(cx).map(|_| ())
        }));
        WtSend {
            stream,
            id,
            stopped: stopped.shared(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, wt::SendStream> {
        self.stream.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl streams::SendStream for WtSend {
    fn id(&self) -> u64 {
        self.id
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut *self.lock()), cx, data)
    }

    /// Written as copies: the stream is shared with its watch, and web-transport-quinn's
    /// zero-copy write holds it across an await.
    async fn write_chunk(&mut self, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| streams::SendStream::poll_write(self, cx, &data)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data.advance(n);
        }
        Ok(())
    }

    fn finish(&mut self) {
        let _ = self.lock().finish();
    }

    fn stopped(&self) -> streams::Stopped {
        Box::pin(self.stopped.clone())
    }

    fn is_settled(&self) -> bool {
        self.stopped.clone().now_or_never().is_some()
    }
}

impl streams::RecvStream for wt::RecvStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(self), cx, buf)
    }

    async fn read_chunk(&mut self, max: usize) -> io::Result<Option<Bytes>> {
        match wt::RecvStream::read_chunk(self, max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(read_error(e)),
        }
    }

    fn stop(&mut self, code: u32) {
        let _ = wt::RecvStream::stop(self, code);
    }
}
