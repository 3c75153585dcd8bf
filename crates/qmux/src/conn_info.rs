//! What is known of the connection under a session: [`ConnectionInfo`], reachable from every
//! [`Session`] with [`Session::connection_info`].
//!
//! The transports of this crate fill it in as they connect or accept: the addresses, the
//! transport's kind, the TLS peer's certificates with the SNI and ALPN of the handshake, the
//! WebSocket upgrade request (path, query, headers: how a browser carries a cookie or a
//! token), and a Unix socket peer's credentials. Layers above add what they vouch for through
//! [`Extensions`] (the P2P layer, the fingerprint its rendezvous introduced).
//!
//! Nothing here is checked by this crate beyond what the transport did: a certificate is
//! there because the TLS handshake verified it with the configured verifier (a server that
//! requires client certificates refuses clients without one, see
//! [`tls::server_config_with_client_auth`](crate::tls::server_config_with_client_auth)).

use std::any::{Any, TypeId};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::Session;

/// How a session's connection is carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// qmux on a TCP connection.
    Tcp,
    /// qmux on a Unix socket.
    Unix,
    /// qmux inside TLS on TCP.
    Tls,
    /// qmux in WebSocket messages (`ws://`, or `wss://` when [`ConnectionInfo::tls`] is set).
    WebSocket,
    /// QUIC streams as the channels.
    Quic,
    /// WebTransport streams (HTTP/3 over QUIC) as the channels.
    WebTransport,
    /// qmux on this process's stdin and stdout.
    Stdio,
    /// qmux on a child process's stdin and stdout.
    Child,
    /// Any other byte stream ([`Session::new`], [`Session::from_split`]).
    Other,
}

impl TransportKind {
    /// A short lowercase name: `tcp`, `unix`, `tls`, `ws`, `quic`, `webtransport`, `stdio`,
    /// `child` or `other`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Unix => "unix",
            TransportKind::Tls => "tls",
            TransportKind::WebSocket => "ws",
            TransportKind::Quic => "quic",
            TransportKind::WebTransport => "webtransport",
            TransportKind::Stdio => "stdio",
            TransportKind::Child => "child",
            TransportKind::Other => "other",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One certificate, DER-encoded (as the TLS handshake carried it).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Certificate(Bytes);

impl Certificate {
    /// A certificate from its DER encoding.
    pub fn from_der(der: impl Into<Bytes>) -> Certificate {
        Certificate(der.into())
    }

    /// The DER encoding.
    pub fn as_der(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate({} bytes)", self.0.len())
    }
}

/// What a TLS (or QUIC) handshake established about the peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    peer_certificates: Vec<Certificate>,
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
}

impl TlsInfo {
    /// Nothing known yet; add with the `with_` methods.
    pub fn new() -> TlsInfo {
        TlsInfo::default()
    }

    /// Sets the peer's certificate chain (end entity first).
    pub fn with_peer_certificates(mut self, certs: Vec<Certificate>) -> TlsInfo {
        self.peer_certificates = certs;
        self
    }

    /// Sets the server name (SNI).
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsInfo {
        self.server_name = Some(name.into());
        self
    }

    /// Sets the negotiated application protocol (ALPN).
    pub fn with_alpn(mut self, protocol: impl Into<Vec<u8>>) -> TlsInfo {
        self.alpn = Some(protocol.into());
        self
    }

    /// The certificate chain the peer presented, end entity first; empty when it presented
    /// none (a client, unless the server required one). On the client side, the server's.
    pub fn peer_certificates(&self) -> &[Certificate] {
        &self.peer_certificates
    }

    /// The peer's end-entity certificate, if it presented one.
    pub fn peer_certificate(&self) -> Option<&Certificate> {
        self.peer_certificates.first()
    }

    /// The server name of the handshake (SNI): the one the client asked for on the server
    /// side, the one sent on the client side.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The application protocol both sides agreed on (ALPN), e.g. `b"qtalk-quic"`.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }
}

/// The HTTP request that opened a WebSocket (the server side of `ws://` and `wss://`): its
/// path, query and headers. Bounded by the handshake's own limits (at most 124 headers and
/// 64 KiB in all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeRequest {
    path: String,
    query: Option<String>,
    headers: Vec<(String, Bytes)>,
}

impl UpgradeRequest {
    /// A request for `path` (the query, if any, after `?`), without headers yet.
    pub fn new(path_and_query: &str) -> UpgradeRequest {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (path_and_query, None),
        };
        UpgradeRequest {
            path: path.to_string(),
            query,
            headers: Vec::new(),
        }
    }

    /// Adds a header (the name is compared without regard to ASCII case).
    pub fn with_header(mut self, name: &str, value: impl Into<Bytes>) -> UpgradeRequest {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The path, e.g. `/qmux`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query after `?`, undecoded, e.g. `token=abc&v=2`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first value of header `name` (any case), when it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .find_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every value of header `name` (any case), as sent.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| &v[..])
    }

    /// Every header as `(lowercase name, value)`, in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), &v[..]))
    }

    /// The value of cookie `name`, from the `Cookie` headers (`a=1; b=2`), undecoded.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.header_values("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// The identity of the process at the other end: a Unix socket peer's credentials (as the
/// kernel reports them when the connection is made), or a child process's id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    pid: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

impl PeerCredentials {
    /// Credentials from their parts.
    pub fn new(pid: Option<u32>, uid: Option<u32>, gid: Option<u32>) -> PeerCredentials {
        PeerCredentials { pid, uid, gid }
    }

    /// The peer's process id, where the platform tells.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The peer's effective user id (Unix sockets).
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The peer's effective group id (Unix sockets).
    pub fn gid(&self) -> Option<u32> {
        self.gid
    }
}

/// Values of any type, one per type, that layers above attach to a connection (e.g. an
/// identity they verified). Cheap to clone: the values are shared.
#[derive(Clone, Default)]
pub struct Extensions {
    /// Most hold one value or none: the first is kept without a list.
    first: Option<Entry>,
    /// A handful more at most: a list beats a map.
    rest: Vec<Entry>,
}

type Entry = (TypeId, Arc<dyn Any + Send + Sync>);

impl Extensions {
    /// No values.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// Stores `value`, replacing a value of the same type.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        self.insert_shared(Arc::new(value));
    }

    /// Stores a shared value (without allocating), replacing a value of the same type.
    pub fn insert_shared<T: Send + Sync + 'static>(&mut self, value: Arc<T>) {
        let id = TypeId::of::<T>();
        let value: Arc<dyn Any + Send + Sync> = value;
        match &mut self.first {
            None => self.first = Some((id, value)),
            Some(first) if first.0 == id => first.1 = value,
            Some(_) => match self.rest.iter_mut().find(|(t, _)| *t == id) {
                Some(slot) => slot.1 = value,
                None => self.rest.push((id, value)),
            },
        }
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.first.iter().chain(self.rest.iter())
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.entries().count()
    }

    /// True when no value is stored.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.len())
            .finish()
    }
}

/// What is known of the connection a session runs on, from
/// [`Session::connection_info`].
///
/// The transports of this crate fill it in as they connect or accept: the addresses, the
/// transport's kind, the TLS peer's certificates with the SNI and ALPN of the handshake, the
/// WebSocket upgrade request (path, query, headers: how a browser carries a cookie or a
/// token), and a Unix socket peer's credentials. Layers above add what they vouch for through
/// [`Extensions`] (the P2P layer, the fingerprint its rendezvous introduced). Nothing here is
/// checked beyond what the transport did: a certificate is there because the TLS handshake
/// verified it with the configured verifier (a server that requires client certificates
/// refuses clients without one, see
/// [`tls::server_config_with_client_auth`](crate::tls::server_config_with_client_auth)).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use qtalk_mux::TransportKind;
/// let listener = qtalk_mux::Listener::bind_tcp("127.0.0.1:0", Default::default()).await?;
/// let addr = listener.local_addr()?;
/// let client = qtalk_mux::transport::connect_tcp(addr, Default::default()).await?;
/// let server = listener.accept().await?;
/// let info = server.connection_info();
/// assert_eq!(info.transport(), TransportKind::Tcp);
/// assert_eq!(info.local_addr(), Some(addr));
/// assert_eq!(info.remote_addr(), client.connection_info().local_addr());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionInfo {
    transport: TransportKind,
    remote_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
    tls: Option<TlsInfo>,
    upgrade: Option<UpgradeRequest>,
    credentials: Option<PeerCredentials>,
    extensions: Extensions,
}

impl Default for ConnectionInfo {
    fn default() -> Self {
        ConnectionInfo::new(TransportKind::Other)
    }
}

impl ConnectionInfo {
    /// A connection of this kind, nothing else known yet; add with the `with_` methods.
    pub fn new(transport: TransportKind) -> ConnectionInfo {
        ConnectionInfo {
            transport,
            remote_addr: None,
            local_addr: None,
            tls: None,
            upgrade: None,
            credentials: None,
            extensions: Extensions::new(),
        }
    }

    /// Sets the peer's address.
    pub fn with_remote_addr(mut self, addr: SocketAddr) -> ConnectionInfo {
        self.remote_addr = Some(addr);
        self
    }

    /// Sets this side's address.
    pub fn with_local_addr(mut self, addr: SocketAddr) -> ConnectionInfo {
        self.local_addr = Some(addr);
        self
    }

    /// Sets what the TLS handshake established.
    pub fn with_tls(mut self, tls: TlsInfo) -> ConnectionInfo {
        self.tls = Some(tls);
        self
    }

    /// Sets the WebSocket upgrade request.
    pub fn with_upgrade_request(mut self, request: UpgradeRequest) -> ConnectionInfo {
        self.upgrade = Some(request);
        self
    }

    /// Sets the peer process's credentials.
    pub fn with_peer_credentials(mut self, credentials: PeerCredentials) -> ConnectionInfo {
        self.credentials = Some(credentials);
        self
    }

    /// Attaches a value (see [`Extensions`]), replacing one of the same type.
    pub fn with_extension<T: Send + Sync + 'static>(mut self, value: T) -> ConnectionInfo {
        self.extensions.insert(value);
        self
    }

    /// How the connection is carried.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// The peer's address (TCP, TLS, WebSocket, QUIC), when known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// This side's address (TCP, TLS, WebSocket, QUIC), when known.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// What the TLS handshake established (TLS, `wss://`, QUIC).
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The peer's certificate chain, end entity first; empty without TLS or when the peer
    /// presented none.
    pub fn peer_certificates(&self) -> &[Certificate] {
        self.tls.as_ref().map_or(&[], |t| t.peer_certificates())
    }

    /// The request that opened the WebSocket (server side of `ws://` and `wss://`).
    pub fn upgrade_request(&self) -> Option<&UpgradeRequest> {
        self.upgrade.as_ref()
    }

    /// The peer process's credentials (Unix sockets; the pid of a child process).
    pub fn peer_credentials(&self) -> Option<&PeerCredentials> {
        self.credentials.as_ref()
    }

    /// What layers above attached.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// True when the connection is encrypted and the peer's certificate (or, for a client,
    /// the server's) was verified by the handshake: TLS, `wss://`, QUIC.
    pub fn is_secure(&self) -> bool {
        self.tls.is_some()
    }
}

impl Session {
    /// What is known of the connection this session runs on: addresses, transport, TLS peer,
    /// WebSocket request, peer credentials, extensions.
    pub fn connection_info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// This session handle with `info` as its connection information (handles cloned from
    /// it afterwards share it): for transports made outside this crate, and for layers that
    /// attach what they verified (see [`ConnectionInfo::with_extension`]).
    pub fn with_connection_info(mut self, info: ConnectionInfo) -> Session {
        self.info = Arc::new(info);
        self
    }
}

/// What rustls established on a TLS connection (either side).
#[cfg(feature = "tls")]
pub(crate) fn tls_info(state: &rustls::CommonState, server_name: Option<&str>) -> TlsInfo {
    let mut info = TlsInfo::new().with_peer_certificates(
        state
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| Certificate::from_der(c.as_ref().to_vec()))
            .collect(),
    );
    if let Some(name) = server_name {
        info = info.with_server_name(name);
    }
    if let Some(alpn) = state.alpn_protocol() {
        info = info.with_alpn(alpn.to_vec());
    }
    info
}

/// What a QUIC connection tells: the peer's address, certificates, SNI and ALPN.
/// `server_name` is the name a client asked for (quinn records the client's only on the
/// server side).
#[cfg(feature = "quic")]
pub(crate) fn quic_info(
    conn: &quinn::Connection,
    server_name: Option<&str>,
    transport: TransportKind,
) -> ConnectionInfo {
    use rustls::pki_types::CertificateDer;
    let mut tls = TlsInfo::new();
    if let Some(certs) = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
    {
        tls = tls.with_peer_certificates(
            certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref().to_vec()))
                .collect(),
        );
    }
    if let Some(hs) = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
    {
        if let Some(p) = hs.protocol {
            tls = tls.with_alpn(p);
        }
        if let Some(n) = hs.server_name {
            tls = tls.with_server_name(n);
        }
    }
    if let Some(n) = server_name {
        tls = tls.with_server_name(n);
    }
    ConnectionInfo::new(transport)
        .with_remote_addr(conn.remote_address())
        .with_tls(tls)
}

/// The connection information of a TCP stream (addresses).
pub(crate) fn tcp_info(transport: TransportKind, stream: &tokio::net::TcpStream) -> ConnectionInfo {
    let mut info = ConnectionInfo::new(transport);
    if let Ok(a) = stream.peer_addr() {
        info = info.with_remote_addr(a);
    }
    if let Ok(a) = stream.local_addr() {
        info = info.with_local_addr(a);
    }
    info
}

/// The connection information of a Unix stream (the peer's credentials).
#[cfg(unix)]
pub(crate) fn unix_info(stream: &tokio::net::UnixStream) -> ConnectionInfo {
    let info = ConnectionInfo::new(TransportKind::Unix);
    match stream.peer_cred() {
        Ok(c) => info.with_peer_credentials(PeerCredentials::new(
            c.pid().and_then(|p| u32::try_from(p).ok()),
            Some(c.uid()),
            Some(c.gid()),
        )),
        Err(_) => info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_request_lookups() {
        let r = UpgradeRequest::new("/qmux?token=abc&v=2")
            .with_header("Cookie", "a=1; session=s3cr3t")
            .with_header("X-Two", "one")
            .with_header("x-two", "two");
        assert_eq!(r.path(), "/qmux");
        assert_eq!(r.query(), Some("token=abc&v=2"));
        assert_eq!(r.cookie("session"), Some("s3cr3t"));
        assert_eq!(r.cookie("a"), Some("1"));
        assert_eq!(r.cookie("sess"), None);
        assert_eq!(r.header("x-TWO"), Some("one"));
        assert_eq!(r.header_values("X-Two").count(), 2);
        assert_eq!(UpgradeRequest::new("/").query(), None);
    }

    #[test]
    fn extensions_by_type() {
        #[derive(Debug, PartialEq)]
        struct Who(&'static str);
        let mut e = Extensions::new();
        assert!(e.get::<Who>().is_none());
        e.insert(Who("a"));
        e.insert(7u32);
        e.insert(Who("b"));
        assert_eq!(e.get::<Who>(), Some(&Who("b")));
        assert_eq!(e.get::<u32>(), Some(&7));
        assert_eq!(e.len(), 2);
    }
}
