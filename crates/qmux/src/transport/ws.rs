//! qmux over WebSocket (feature `websocket`, on by default), as the reference's `mux.DialWS`
//! and `mux.ListenWS` (`golang.org/x/net/websocket`) speak it.
//!
//! The qmux byte stream travels in **binary** messages. Message boundaries carry no meaning:
//! each write of the session becomes one message (a batch of frames, split only when it is
//! very large), and the payloads of incoming messages are read as one continuous stream, so a
//! frame may span several messages and a message may hold several frames. Text messages are
//! read like binary ones; pings are answered; a Close frame ends the stream cleanly (the
//! session then ends with [`Error::PeerClosed`](crate::Error::PeerClosed)), and so does a
//! connection that ends without one, as a TCP connection would. Closing the session sends a
//! Close frame before the connection is dropped.
//!
//! Interop notes: the Go server refuses (HTTP 403) a handshake without an `Origin` header, so
//! [`connect_ws`] sends `Origin: http://<host:port>/` as the Go client does. The Go client
//! always connects to path `/`; [`Listener::bind_ws`](crate::Listener::bind_ws) accepts any
//! path and does not require `Origin`. With the `tls` feature, `connect_wss` and
//! [`Listener::bind_wss`](crate::Listener::bind_wss) add TLS (`wss://`), which the reference
//! does not have.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = qtalk_mux::Listener::bind_ws("127.0.0.1:0", qtalk_mux::Config::default()).await?;
//! let url = format!("ws://{}/", listener.local_addr()?);
//! tokio::spawn(async move {
//!     while let Ok(session) = listener.accept().await {
//!         tokio::spawn(async move { while let Some(_ch) = session.accept().await {} });
//!     }
//! });
//! let session = qtalk_mux::transport::ws::connect_ws(&url, qtalk_mux::Config::default()).await?;
//! session.close();
//! # Ok(())
//! # }
//! ```

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{error::ProtocolError, Error as WsError, Message};
pub use tokio_tungstenite::{self, WebSocketStream};

use crate::conn_info::tcp_info;
use crate::{Config, ConnectionInfo, Session, TransportKind, UpgradeRequest};

/// Largest message sent: a bigger write is sent as several messages (receivers may buffer a
/// whole message before delivering any of it).
const MAX_MESSAGE: usize = 1 << 20;

/// Connects to a `ws://HOST[:PORT][/PATH]` URL (port 80 and path `/` by default) and runs a
/// session over the WebSocket.
///
/// Sends `Origin: http://HOST[:PORT]/`, which the Go reference's server requires. A `wss://`
/// URL is refused here (see `connect_wss`, feature `tls`); a refused handshake (an HTTP status instead
/// of the upgrade) is an [`io::ErrorKind::ConnectionRefused`] error naming the status.
pub async fn connect_ws(url: &str, config: Config) -> io::Result<Session> {
    let (request, addr) = client_request(url, false)?;
    let stream = TcpStream::connect(addr.as_str()).await?;
    crate::transport::tune_tcp(&stream, &config);
    let info = tcp_info(TransportKind::WebSocket, &stream);
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config(&config)))
            .await
            .map_err(handshake_error)?;
    Ok(over_websocket(ws, config).with_connection_info(info))
}

/// Connects to a `wss://HOST[:PORT][/PATH]` URL (port 443 and path `/` by default): TLS with
/// the given settings (the certificate must name `HOST`), then the WebSocket upgrade as in
/// [`connect_ws`] (`Origin: https://HOST[:PORT]/`).
#[cfg(feature = "tls")]
pub async fn connect_wss(
    url: &str,
    tls: rustls::ClientConfig,
    config: Config,
) -> io::Result<Session> {
    let (request, addr) = client_request(url, true)?;
    let host = request.uri().host().unwrap_or_default();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let stream = TcpStream::connect(addr.as_str()).await?;
    crate::transport::tune_tcp(&stream, &config);
    let info = tcp_info(TransportKind::WebSocket, &stream);
    let stream = crate::tls::client_handshake(stream, &host, tls).await?;
    let info = info.with_tls(crate::conn_info::tls_info(stream.get_ref().1, Some(&host)));
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config(&config)))
            .await
            .map_err(handshake_error)?;
    Ok(over_websocket(ws, config).with_connection_info(info))
}

/// Runs a session over an established (already upgraded) WebSocket, client or server side.
///
/// Messages larger than the stream's configured limits (tungstenite's defaults: 16 MiB frames,
/// 64 MiB messages) end the session; the Go reference sends one qmux frame per message, so keep
/// [`ConfigBuilder::max_packet`](crate::ConfigBuilder::max_packet) below them.
pub fn over_websocket<S>(ws: WebSocketStream<S>, config: Config) -> Session
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Session::new(WsIo::new(ws), config.copying_transport())
        .with_connection_info(ConnectionInfo::new(TransportKind::WebSocket))
}

/// Performs the server side of the WebSocket handshake on `stream` (any path, no `Origin`
/// required) and runs a session over it; the upgrade request (path, query, headers) is in
/// the session's [`ConnectionInfo::upgrade_request`]. For a ready-made listener see
/// [`Listener::bind_ws`](crate::Listener::bind_ws).
pub async fn accept_ws<S>(stream: S, config: Config) -> io::Result<Session>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_ws_with(
        stream,
        config,
        ConnectionInfo::new(TransportKind::WebSocket),
    )
    .await
}

/// [`accept_ws`], adding the upgrade request to `info`.
async fn accept_ws_with<S>(stream: S, config: Config, info: ConnectionInfo) -> io::Result<Session>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut upgrade = None;
    // The error type is tungstenite's (an HTTP response), never built here.
    #[allow(clippy::result_large_err)]
    let seen = |request: &Request, response| {
        upgrade = Some(upgrade_request(request));
        Ok(response)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, seen, Some(ws_config(&config)))
            .await
            .map_err(handshake_error)?;
    let info = match upgrade {
        Some(request) => info.with_upgrade_request(request),
        None => info,
    };
    Ok(over_websocket(ws, config).with_connection_info(info))
}

/// Our copy of what the client's upgrade request said.
fn upgrade_request(request: &Request) -> UpgradeRequest {
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    request
        .headers()
        .iter()
        .fold(UpgradeRequest::new(target), |r, (name, value)| {
            r.with_header(
                name.as_str(),
                bytes::Bytes::copy_from_slice(value.as_bytes()),
            )
        })
}

/// Limits that admit the largest frame the peer may send us (one qmux DATA frame of our
/// maximum packet size per message, as the reference sends).
fn ws_config(config: &Config) -> WebSocketConfig {
    let frame = config.max_packet_size() as usize + 64;
    let defaults = WebSocketConfig::default();
    let at_least = |limit: Option<usize>, n: usize| limit.map(|l| l.max(n));
    defaults
        .max_frame_size(at_least(defaults.max_frame_size, frame))
        .max_message_size(at_least(defaults.max_message_size, frame))
}

/// The handshake request for `url` (with `Origin`) and the `host:port` to connect to.
fn client_request(url: &str, secure: bool) -> io::Result<(Request, String)> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let uri: Uri = url
        .parse()
        .map_err(|e| invalid(format!("bad WebSocket URL {url:?}: {e}")))?;
    let (scheme, other, default_port, origin_scheme) = if secure {
        ("wss", "ws", 443, "https")
    } else {
        ("ws", "wss", 80, "http")
    };
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case(scheme) => {}
        Some(s) if s.eq_ignore_ascii_case(other) => {
            let hint = if secure {
                "a ws:// URL has no TLS: use connect_ws"
            } else {
                "wss:// (WebSocket over TLS) needs TLS settings: use connect_wss"
            };
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{url:?}: {hint}"),
            ));
        }
        _ => return Err(invalid(format!("not a {scheme}:// URL: {url:?}"))),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid(format!("no host in {url:?}")));
    };
    if authority.as_str().contains('@') {
        return Err(invalid(format!("user info is not supported: {url:?}")));
    }
    let host = authority.host();
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let addr = format!("{host}:{}", authority.port_u16().unwrap_or(default_port));
    let origin = format!("{origin_scheme}://{}/", authority.as_str());
    // The handshake wants the scheme in lower case.
    let mut parts = uri.into_parts();
    parts.scheme = Some(scheme.parse().expect("scheme"));
    let uri =
        Uri::from_parts(parts).map_err(|e| invalid(format!("bad WebSocket URL {url:?}: {e}")))?;
    let mut request = uri
        .into_client_request()
        .map_err(|e| invalid(format!("bad WebSocket URL {url:?}: {e}")))?;
    let origin = HeaderValue::from_str(&origin)
        .map_err(|e| invalid(format!("bad WebSocket URL {url:?}: {e}")))?;
    request.headers_mut().insert(header::ORIGIN, origin);
    Ok((request, addr))
}

fn handshake_error(e: WsError) -> io::Error {
    match e {
        WsError::Http(response) => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("WebSocket handshake refused: HTTP {}", response.status()),
        ),
        WsError::Io(e) => e,
        other => {
            let e = to_io(other);
            io::Error::new(e.kind(), format!("WebSocket handshake failed: {e}"))
        }
    }
}

/// Maps a WebSocket error to the `io::Error` the session sees.
fn to_io(e: WsError) -> io::Error {
    use io::ErrorKind as K;
    let kind = match e {
        WsError::Io(e) => return e,
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::SendAfterClosing) => K::BrokenPipe,
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => K::ConnectionReset,
        WsError::Protocol(_) | WsError::Capacity(_) | WsError::Utf8(_) => K::InvalidData,
        _ => K::Other,
    };
    io::Error::new(kind, e)
}

/// A WebSocket as a byte stream: writes become binary messages, incoming message payloads
/// are read back to back.
struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last message received.
    incoming: Bytes,
    /// The WebSocket was closed by the peer (or ended): reads return end-of-stream.
    read_done: bool,
    /// Builds outgoing messages; its memory is reused once a sent message was written out.
    staging: BytesMut,
}

impl<S> WsIo<S> {
    fn new(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            incoming: Bytes::new(),
            read_done: false,
            staging: BytesMut::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.incoming.is_empty() {
                let n = this.incoming.len().min(buf.remaining());
                buf.put_slice(&this.incoming[..n]);
                this.incoming.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            // Reading also sends the automatic replies to pings and Close.
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) => this.incoming = b,
                Some(Ok(Message::Text(t))) => this.incoming = Bytes::from(t),
                Some(Ok(Message::Close(_))) | None => this.read_done = true,
                // The connection ended without a Close frame: an end-of-stream as on TCP (the
                // session still tells a clean end from one inside a frame).
                Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                    this.read_done = true
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => {
                    this.read_done = true;
                    return Poll::Ready(Err(to_io(e)));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Sends the buffers as one binary message (up to [`MAX_MESSAGE`] bytes of them).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs
            .iter()
            .map(|b| b.len())
            .fold(0usize, usize::saturating_add);
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        let n = total.min(MAX_MESSAGE);
        this.staging.reserve(n);
        let mut left = n;
        for b in bufs {
            let k = b.len().min(left);
            this.staging.extend_from_slice(&b[..k]);
            left -= k;
            if left == 0 {
                break;
            }
        }
        let message = Message::Binary(this.staging.split().freeze());
        Pin::new(&mut this.ws).start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(to_io)
    }

    /// Sends a Close frame and flushes; does not wait for the peer's Close reply.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(to_io)
    }
}

/// The WebSocket side of [`Listener`](crate::Listener): TCP connections are upgraded in
/// tasks of their own, so a slow client never holds up the others.
/// The server side of a WebSocket connection for a listener: the upgrade (any path, no
/// `Origin` required), within the configured handshake timeout, together with `tls` when given; `None`
/// (logged at debug level) when either fails.
pub(crate) async fn server_session(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    #[cfg(feature = "tls")] tls: Option<tokio_rustls::TlsAcceptor>,
    config: Config,
) -> Option<Session> {
    crate::transport::tune_tcp(&stream, &config);
    let limit = config.handshake_timeout;
    let info = tcp_info(TransportKind::WebSocket, &stream);
    let handshake = async {
        #[cfg(feature = "tls")]
        if let Some(tls) = tls {
            let stream = tls.accept(stream).await?;
            let conn = stream.get_ref().1;
            let info = info.with_tls(crate::conn_info::tls_info(conn, conn.server_name()));
            return accept_ws_with(stream, config, info).await;
        }
        accept_ws_with(stream, config, info).await
    };
    match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(session)) => Some(session),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "qmux: WebSocket handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "qmux: WebSocket handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let (req, addr) = client_request("ws://127.0.0.1:9000", false).unwrap();
        assert_eq!(addr, "127.0.0.1:9000");
        assert_eq!(req.headers()["origin"], "http://127.0.0.1:9000/");
        assert_eq!(req.uri().path(), "/");

        let (req, addr) = client_request("WS://example.com/qmux?x=1", false).unwrap();
        assert_eq!(addr, "example.com:80");
        assert_eq!(req.headers()["origin"], "http://example.com/");
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), "/qmux?x=1");
        assert_eq!(req.uri().scheme_str(), Some("ws"));

        let (req, addr) = client_request("ws://[::1]:80/", false).unwrap();
        assert_eq!(addr, "[::1]:80");
        assert_eq!(req.headers()["origin"], "http://[::1]:80/");

        let (req, addr) = client_request("WSS://example.com/", true).unwrap();
        assert_eq!(addr, "example.com:443");
        assert_eq!(req.headers()["origin"], "https://example.com/");
        assert_eq!(req.uri().scheme_str(), Some("wss"));

        let e = client_request("wss://example.com/", false).unwrap_err();
        assert!(e.to_string().contains("connect_wss"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let e = client_request("ws://example.com/", true).unwrap_err();
        assert!(e.to_string().contains("connect_ws"), "{e}");
        let e = client_request("tcp://example.com:1", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(client_request("ws://u@h:1/", false).is_err());
        assert!(client_request("not a url", false).is_err());
    }

    #[test]
    fn limits_admit_large_packets() {
        let c = ws_config(&Config::default());
        assert_eq!(c.max_frame_size, Some(16 << 20));
        let c = ws_config(
            &Config::builder()
                .max_packet(32 << 20)
                .build()
                .expect("valid config"),
        );
        assert!(c.max_frame_size.unwrap() > 32 << 20);
        assert!(c.max_message_size.unwrap() >= 64 << 20);
    }
}
