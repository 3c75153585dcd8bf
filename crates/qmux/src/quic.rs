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

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use quinn::{ConnectionError, VarInt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::ToSocketAddrs;
use tokio::task::JoinSet;

use crate::{Channel, Config, Error, Session};

pub use quinn;

/// The ALPN protocol both sides offer: `qtalk-quic`.
pub const ALPN: &[u8] = b"qtalk-quic";

/// Application error code for closing a connection or stopping a stream, as the reference.
const CLOSE_CODE: u32 = 42;
/// Reason sent when a session closes; the reference's accept loop treats it as a clean end.
const CLOSE_REASON: &[u8] = b"close connection";
/// The byte that announces a new stream.
const OPEN_MARKER: &[u8] = b"!";

/// Transport limits derived from the session configuration: the channel window is the stream
/// window, the memory budget (less the send buffer) is the connection's receive window, and
/// the channel limit bounds how many streams the peer may have open at once (QUIC makes the
/// peer wait for more, as qmux leaves its OPENs unconfirmed).
fn transport_config(config: &Config) -> quinn::TransportConfig {
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
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(config.keep_alive))
        // Past QUIC's largest idle timeout (2^62 ms), none.
        .max_idle_timeout(config.idle_timeout.try_into().ok());
    t
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("quic: {e}"))
}

/// quinn client settings from rustls settings (ALPN `qtalk-quic` unless one is set).
pub fn client_config(
    mut tls: rustls::ClientConfig,
    config: &Config,
) -> io::Result<quinn::ClientConfig> {
    if tls.alpn_protocols.is_empty() {
        tls.alpn_protocols = vec![ALPN.to_vec()];
    }
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(invalid)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config(config)));
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
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(invalid)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(config)));
    Ok(server)
}

/// Dials a QUIC server and runs a session over the connection. `server_name` is checked
/// against the server's certificate.
pub async fn connect(
    addr: impl ToSocketAddrs,
    server_name: &str,
    tls: rustls::ClientConfig,
    config: Config,
) -> io::Result<Session> {
    let remote = tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| invalid("the address resolved to nothing"))?;
    let local: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(local)?;
    let connecting = endpoint
        .connect_with(client_config(tls, &config)?, remote, server_name)
        .map_err(invalid)?;
    let conn = connecting.await.map_err(io::Error::from)?;
    let mut info = crate::conn_info::quic_info(&conn, Some(server_name));
    if let Ok(a) = endpoint.local_addr() {
        info = info.with_local_addr(a);
    }
    let session = Session::from_quic(QuicSession::new(conn, Some(endpoint), config));
    Ok(session.with_connection_info(info))
}

/// Runs a session over an established QUIC connection (either side).
///
/// Must be called within a tokio runtime: it spawns the session's one task, which waits for
/// the acknowledgement of finished streams (so that closing the session does not cut them off)
/// and ends with the connection.
pub fn over_connection(conn: quinn::Connection, config: Config) -> Session {
    let info = crate::conn_info::quic_info(&conn, None);
    Session::from_quic(QuicSession::new(conn, None, config)).with_connection_info(info)
}

/// Why a connection ended, in the session's terms.
fn session_error(e: ConnectionError) -> Error {
    match e {
        ConnectionError::LocallyClosed => Error::Closed,
        ConnectionError::ApplicationClosed(_) => Error::PeerClosed,
        ConnectionError::TimedOut => Error::Timeout,
        other => Error::from(io::Error::from(other)),
    }
}

/// The QUIC side of [`Session`].
pub(crate) struct QuicSession {
    conn: quinn::Connection,
    /// The client's own endpoint, kept for a clean close.
    endpoint: Option<quinn::Endpoint>,
    config: Config,
    channels: Arc<AtomicUsize>,
    /// Streams whose data the peer has not acknowledged yet.
    unacked: Arc<Unacked>,
    /// `close` was called (the connection closes once `unacked` drained, or on time-out).
    closing: AtomicBool,
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
struct Unacked {
    pending: Mutex<Pending>,
    /// `close` was called.
    closing: tokio::sync::Notify,
}

/// See [`Unacked`].
struct Pending {
    streams: Vec<quinn::SendStream>,
    /// Prune when `streams` reaches this length.
    prune_at: usize,
}

/// How many streams may be left between two prunings of [`Unacked`].
const PRUNE_EVERY: usize = 32;

impl Pending {
    /// Lets go of the settled streams.
    fn prune(&mut self) {
        self.streams.retain(|s| !settled(s));
        self.prune_at = self.streams.len() + PRUNE_EVERY;
    }
}

/// True once the peer acknowledged the stream's data or stopped it; then it needs no keeping.
fn settled(stream: &quinn::SendStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let stopped = std::pin::pin!(stream.stopped());
    stopped.poll(&mut cx).is_ready()
}

impl Unacked {
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
    fn push(&self, stream: quinn::SendStream) {
        if settled(&stream) {
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
    fn take(&self) -> Vec<quinn::SendStream> {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut p.streams)
    }
}

/// The session's one task: once `close` was called, waits for the acknowledgement of every
/// finished stream (see [`Unacked`]) for up to the close timeout, then closes the connection.
/// It ends with the connection.
async fn deliver(
    conn: quinn::Connection,
    unacked: Arc<Unacked>,
    close_timeout: std::time::Duration,
) {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    tokio::select! {
        () = unacked.closing.notified() => {}
        _ = conn.closed() => return,
    }
    let mut waiting: FuturesUnordered<_> = unacked
        .take()
        .into_iter()
        .map(|stream| async move {
            let _ = stream.stopped().await;
        })
        .collect();
    let all = async { while waiting.next().await.is_some() {} };
    tokio::select! {
        _ = tokio::time::timeout(close_timeout, all) => {
            conn.close(VarInt::from_u32(CLOSE_CODE), CLOSE_REASON);
        }
        _ = conn.closed() => {}
    }
}

impl QuicSession {
    /// Must be called within a tokio runtime: it spawns the session's one task ([`deliver`]).
    fn new(conn: quinn::Connection, endpoint: Option<quinn::Endpoint>, config: Config) -> Self {
        let unacked = Arc::new(Unacked::new());
        tokio::spawn(deliver(conn.clone(), unacked.clone(), config.close_timeout));
        QuicSession {
            conn,
            endpoint,
            config,
            channels: Arc::new(AtomicUsize::new(0)),
            unacked,
            closing: AtomicBool::new(false),
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    fn channel(&self, send: quinn::SendStream, recv: quinn::RecvStream, accepted: bool) -> Channel {
        let id = u64::from(send.id()) as u32;
        let count = Arc::new(Counted::new(&self.channels));
        Channel::from_backend(crate::backend::ChannelBackend::Quic(QuicChannel {
            read: QuicReadHalf {
                stream: recv,
                marker_pending: accepted,
                eof: false,
                id,
                _count: count.clone(),
            },
            write: QuicWriteHalf {
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
        let (mut send, recv) = self.conn.open_bi().await.map_err(session_error)?;
        send.write_all(OPEN_MARKER)
            .await
            .map_err(|e| Error::from(io::Error::from(e)))?;
        Ok(self.channel(send, recv, false))
    }

    pub(crate) async fn accept(&self) -> Option<Channel> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let (send, recv) = self.conn.accept_bi().await.ok()?;
        Some(self.channel(send, recv, true))
    }

    /// Closes the connection once the data of finished streams has been acknowledged (for up
    /// to the configured close timeout), as a qmux session delivers what was queued.
    pub(crate) fn close(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.unacked.settle() {
            self.conn.close(VarInt::from_u32(CLOSE_CODE), CLOSE_REASON);
            return;
        }
        // The session's task closes once the finished streams are acknowledged.
        self.unacked.closing.notify_one();
    }

    pub(crate) async fn wait(&self) -> Error {
        let err = session_error(self.conn.closed().await);
        if let Some(endpoint) = &self.endpoint {
            // Let the connection's close reach the peer before the endpoint goes away.
            let _ = tokio::time::timeout(self.config.close_timeout, endpoint.wait_idle()).await;
        }
        err
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.conn.close_reason().is_some()
    }

    pub(crate) fn channel_count(&self) -> usize {
        self.channels.load(Ordering::Relaxed)
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

/// A channel over QUIC: one bidirectional stream.
pub(crate) struct QuicChannel {
    pub(crate) read: QuicReadHalf,
    pub(crate) write: QuicWriteHalf,
}

/// The receiving side of a channel's stream.
pub(crate) struct QuicReadHalf {
    stream: quinn::RecvStream,
    /// The opener's announcement byte has not been read yet.
    marker_pending: bool,
    eof: bool,
    id: u32,
    _count: Arc<Counted>,
}

impl QuicReadHalf {
    pub(crate) fn id(&self) -> qtalk_mux_proto::ChannelId {
        qtalk_mux_proto::ChannelId::new(self.id)
    }

    /// Reads and drops the opener's announcement byte.
    fn poll_marker(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        ready!(Pin::new(&mut self.stream).poll_read(cx, &mut buf))?;
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
        ready!(Pin::new(&mut self.stream).poll_read(cx, buf))?;
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
        match self.stream.read_chunk(max.max(1), true).await {
            Ok(Some(chunk)) => Ok(Some(chunk.bytes)),
            Ok(None) => {
                self.eof = true;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for QuicReadHalf {
    fn drop(&mut self) {
        if !self.eof {
            let _ = self.stream.stop(VarInt::from_u32(CLOSE_CODE));
        }
    }
}

/// The sending side of a channel's stream.
pub(crate) struct QuicWriteHalf {
    /// Locked only by `close_write`, which takes `&self`; writes reach it through `get_mut`.
    /// `None` only while dropping.
    stream: Mutex<Option<quinn::SendStream>>,
    id: u32,
    unacked: Arc<Unacked>,
    _count: Arc<Counted>,
}

impl Drop for QuicWriteHalf {
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
        let _ = stream.finish();
        self.unacked.push(stream);
    }
}

impl QuicWriteHalf {
    pub(crate) fn id(&self) -> qtalk_mux_proto::ChannelId {
        qtalk_mux_proto::ChannelId::new(self.id)
    }

    fn stream(&mut self) -> &mut quinn::SendStream {
        self.stream
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
            .expect("present until dropped")
    }

    /// Completes once the peer stopped the stream or the connection ended.
    pub(crate) fn stopped(&self) -> Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let guard = self.stream.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(stream) => {
                let stopped = stream.stopped();
                Box::pin(async move {
                    let _ = stopped.await;
                })
            }
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
            let _ = stream.finish();
        }
        Ok(())
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(self.stream()), cx, data)
    }

    pub(crate) async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        self.stream()
            .write_chunk(data)
            .await
            .map_err(io::Error::from)
    }
}

/// Accepts QUIC connections for [`Listener::bind_quic`](crate::Listener::bind_quic),
/// running handshakes concurrently.
pub(crate) struct QuicListener {
    endpoint: quinn::Endpoint,
    handshakes: tokio::sync::Mutex<JoinSet<Option<quinn::Connection>>>,
}

impl QuicListener {
    pub(crate) async fn bind(
        addr: impl ToSocketAddrs,
        tls: rustls::ServerConfig,
        config: &Config,
    ) -> io::Result<QuicListener> {
        let addr = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| invalid("the address resolved to nothing"))?;
        let endpoint = quinn::Endpoint::server(server_config(tls, config)?, addr)?;
        Ok(QuicListener {
            endpoint,
            handshakes: tokio::sync::Mutex::new(JoinSet::new()),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The next connection whose handshake succeeded, as a session. Failed handshakes are
    /// logged (debug) and skipped.
    pub(crate) async fn accept(&self, config: &Config) -> io::Result<Session> {
        let mut handshakes = self.handshakes.lock().await;
        let limit = config.handshake_timeout;
        loop {
            let room = handshakes.len() < config.max_handshakes;
            tokio::select! {
                incoming = self.endpoint.accept(), if room => {
                    let Some(incoming) = incoming else {
                        return Err(io::Error::new(io::ErrorKind::NotConnected, "quic: endpoint closed"));
                    };
                    handshakes.spawn(async move {
                        let peer = incoming.remote_address();
                        match tokio::time::timeout(limit, incoming).await {
                            Ok(Ok(conn)) => Some(conn),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "qmux: QUIC handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "qmux: QUIC handshake timed out");
                                None
                            }
                        }
                    });
                }
                Some(done) = handshakes.join_next() => {
                    if let Ok(Some(conn)) = done {
                        let session = over_connection(conn, config.clone());
                        let info = session.connection_info().clone();
                        let info = match self.endpoint.local_addr() {
                            Ok(a) => info.with_local_addr(a),
                            Err(_) => info,
                        };
                        return Ok(session.with_connection_info(info));
                    }
                }
            }
        }
    }
}
