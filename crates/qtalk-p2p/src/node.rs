//! A peer: one UDP socket (one quinn endpoint) for the rendezvous connection, for dialing
//! other peers and for accepting them; direct sessions by hole punching, relayed ones through
//! the rendezvous otherwise.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use qtalk::codec::Json;
use qtalk::rpc::{func, Call, Peer};
use qtalk::Value;
use qtalk_mux::quic::quinn;
use qtalk_mux::tls::rustls;
use qtalk_mux::Session;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::identity::{peer_fingerprint, peer_server, pinned_client, with_client_cert, Allowed};
use crate::rendezvous::canonical;
use crate::wire::{self, Introduction};
use crate::{Error, Fingerprint, NodeConfig, PeerIdentity, PEER_SERVER_NAME};

/// How a session with another peer travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Path {
    /// A QUIC connection straight to the other peer (through the NATs' punched holes).
    Direct,
    /// A qmux session inside TLS inside a byte stream the rendezvous forwards.
    Relayed,
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Path::Direct => "direct",
            Path::Relayed => "relayed",
        })
    }
}

/// What the rendezvous vouched for about the peer at the other end of a P2P session:
/// attached to the session's connection information
/// ([`ConnectionInfo::extensions`](qtalk_mux::ConnectionInfo::extensions)), so that a
/// handler can read it from [`Call::connection`](qtalk::rpc::Call::connection). The peer's
/// certificate was checked against this fingerprint in the handshake, direct or relayed.
///
/// ```
/// # fn handler(call: &qtalk::rpc::Call) {
/// use qtalk_p2p::VouchedPeer;
/// if let Some(peer) = call.connection().extensions().get::<VouchedPeer>() {
///     println!("{} ({})", peer.name(), peer.fingerprint());
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VouchedPeer {
    name: String,
    fingerprint: Fingerprint,
    path: Path,
}

impl VouchedPeer {
    /// The name the peer registered (empty for a peer that registered none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fingerprint of the peer's certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// How the session travels.
    pub fn path(&self) -> Path {
        self.path
    }
}

/// `session` with what the rendezvous vouched for in its connection information.
fn vouched(session: Session, intro: &Introduction, path: Path) -> Session {
    let info = session
        .connection_info()
        .clone()
        .with_extension(VouchedPeer {
            name: intro.name.clone(),
            fingerprint: intro.fingerprint,
            path,
        });
    session.with_connection_info(info)
}

/// A session with another peer, authenticated by the fingerprint the rendezvous vouched for.
#[derive(Clone, Debug)]
pub struct P2pSession {
    session: Session,
    path: Path,
    name: String,
    fingerprint: Fingerprint,
    remote_addr: Option<SocketAddr>,
}

impl P2pSession {
    /// The session (QUIC streams when direct, qmux framing when relayed).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, consuming this value.
    pub fn into_session(self) -> Session {
        self.session
    }

    /// How the session travels.
    pub fn path(&self) -> Path {
        self.path
    }

    /// The other peer's registered name (empty for a peer that registered none).
    pub fn peer_name(&self) -> &str {
        &self.name
    }

    /// The fingerprint of the other peer's certificate (checked in the handshake).
    pub fn peer_fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The other peer's address, when direct.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connections the endpoint accepted, handed to the introductions expecting their peer.
#[derive(Default)]
struct Router {
    /// Fingerprints accepted by the endpoint's TLS (with the number of introductions
    /// expecting each).
    expected: Arc<Mutex<HashMap<Fingerprint, usize>>>,
    /// Where connections from each expected peer go.
    routes: Mutex<HashMap<Fingerprint, mpsc::Sender<quinn::Connection>>>,
}

/// How many accepted connections from one peer may wait for its introduction.
const ROUTE_QUEUE: usize = 16;

/// An expectation; dropping it stops accepting the peer.
struct Expecting {
    router: Arc<Router>,
    fingerprint: Fingerprint,
}

impl Drop for Expecting {
    fn drop(&mut self) {
        let mut expected = lock(&self.router.expected);
        if let Some(n) = expected.get_mut(&self.fingerprint) {
            *n -= 1;
            if *n == 0 {
                expected.remove(&self.fingerprint);
                lock(&self.router.routes).remove(&self.fingerprint);
            }
        }
    }
}

impl Router {
    /// Accepts connections from `fp` until the result is dropped; `None` while another
    /// introduction with the same peer is under way.
    fn expect(
        self: &Arc<Self>,
        fp: Fingerprint,
    ) -> Option<(Expecting, mpsc::Receiver<quinn::Connection>)> {
        let mut routes = lock(&self.routes);
        if routes.contains_key(&fp) {
            return None;
        }
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        routes.insert(fp, tx);
        *lock(&self.expected).entry(fp).or_default() += 1;
        Some((
            Expecting {
                router: self.clone(),
                fingerprint: fp,
            },
            rx,
        ))
    }

    fn deliver(&self, conn: quinn::Connection) {
        let route = peer_fingerprint(&conn).and_then(|fp| lock(&self.routes).get(&fp).cloned());
        match route {
            Some(tx) => {
                if let Err(
                    mpsc::error::TrySendError::Full(conn) | mpsc::error::TrySendError::Closed(conn),
                ) = tx.try_send(conn)
                {
                    conn.close(quinn::VarInt::from_u32(0), b"not expected");
                }
            }
            None => conn.close(quinn::VarInt::from_u32(0), b"not expected"),
        }
    }
}

struct Inner {
    config: NodeConfig,
    identity: PeerIdentity,
    endpoint: quinn::Endpoint,
    rendezvous: Peer,
    router: Arc<Router>,
    local_addrs: Vec<SocketAddr>,
    public_addr: Mutex<Option<SocketAddr>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<P2pSession>>,
    incoming_tx: mpsc::Sender<P2pSession>,
    incoming_slots: Arc<Semaphore>,
    accept_task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.rendezvous.close();
    }
}

/// A peer connected to a rendezvous: registers a name, reaches other peers by theirs, and
/// accepts the peers that reach it. Cheap to clone (one node).
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("fingerprint", &self.inner.identity.fingerprint())
            .field("local_addrs", &self.inner.local_addrs)
            .finish_non_exhaustive()
    }
}

/// The address of this machine on the route to `remote` (no packet is sent).
fn route_address(remote: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(any).ok()?;
    socket.connect(remote).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

impl Node {
    /// Connects to the rendezvous at `rendezvous` over QUIC. `server_name` and `tls` say how
    /// to check the rendezvous's certificate (as for any QUIC server); the node presents
    /// `identity` as its client certificate there and to other peers.
    pub async fn connect(
        rendezvous: SocketAddr,
        server_name: &str,
        tls: rustls::ClientConfig,
        identity: PeerIdentity,
        config: NodeConfig,
    ) -> Result<Node, Error> {
        config.check()?;
        let router = Arc::new(Router::default());
        let server_tls = peer_server(&identity, Allowed::Expected(router.expected.clone()))?;
        let server = qtalk_mux::quic::server_config(server_tls, &config.session)?;
        let endpoint = quinn::Endpoint::server(server, config.bind)?;
        let client =
            qtalk_mux::quic::client_config(with_client_cert(tls, &identity)?, &config.session)?;
        let connecting = endpoint
            .connect_with(client, rendezvous, server_name)
            .map_err(|e| Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        let conn = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Error::Io(e.into())),
            Err(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer from the rendezvous at {rendezvous}"),
                )))
            }
        };
        let port = endpoint.local_addr()?.port();
        let mut local_addrs = Vec::new();
        if !config.hide_local_addrs {
            let ip = if config.bind.ip().is_unspecified() {
                route_address(rendezvous)
            } else {
                Some(config.bind.ip())
            };
            if let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) {
                local_addrs.push(SocketAddr::new(ip, port));
            }
            local_addrs.extend(config.extra_local_addrs.iter().copied());
        }
        let session = qtalk_mux::quic::over_connection(conn, config.session.clone());
        let peer = Peer::new(session, Json);
        let (incoming_tx, incoming_rx) = mpsc::channel(config.max_incoming);
        let accept_task = tokio::spawn(accept_loop(
            endpoint.clone(),
            router.clone(),
            config.handshake_timeout,
            config.max_handshakes,
        ));
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let weak = weak.clone();
            let _ = peer.handle(
                wire::INCOMING,
                func(move |_call: Call, (intro,): (Introduction,)| {
                    let weak = weak.clone();
                    async move {
                        match weak.upgrade() {
                            Some(inner) => Node { inner }.introduced(intro),
                            None => Err("closing".to_string()),
                        }
                    }
                }),
            );
            Inner {
                incoming_slots: Arc::new(Semaphore::new(config.max_incoming)),
                config,
                identity,
                endpoint,
                rendezvous: peer.clone(),
                router,
                local_addrs,
                public_addr: Mutex::new(None),
                incoming: tokio::sync::Mutex::new(incoming_rx),
                incoming_tx,
                accept_task: accept_task.abort_handle(),
            }
        });
        peer.respond();
        Ok(Node { inner })
    }

    /// This node's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.identity.fingerprint()
    }

    /// The node's UDP socket address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// The local addresses announced to the peers this node meets.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.local_addrs
    }

    /// The node's address as the rendezvous saw it, once [`Node::register`] succeeded.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        *lock(&self.inner.public_addr)
    }

    /// The session with the rendezvous.
    pub fn rendezvous(&self) -> &Session {
        self.inner.rendezvous.session()
    }

    /// Claims `name` on the rendezvous (first come; released when this node's rendezvous
    /// session ends). Registering another name replaces it.
    pub async fn register(&self, name: &str) -> Result<SocketAddr, Error> {
        let reg = wire::Register {
            name: name.to_string(),
            fingerprint: self.fingerprint(),
            local_addrs: self.inner.local_addrs.clone(),
        };
        let reply: wire::Registered = self
            .inner
            .rendezvous
            .caller()
            .call_timeout(self.inner.config.connect_timeout, wire::REGISTER, &[reg])
            .await
            .map_err(Error::from_rendezvous)?;
        let public = canonical(reply.public_addr);
        *lock(&self.inner.public_addr) = Some(public);
        Ok(public)
    }

    /// Reaches the peer registered as `name`: directly when the NATs let the punched
    /// connection through within [`NodeConfig::relay_after`], else through the rendezvous's
    /// relay.
    pub async fn connect_to(&self, name: &str) -> Result<P2pSession, Error> {
        let config = &self.inner.config;
        let started = Instant::now();
        let ask = wire::Connect {
            name: name.to_string(),
            local_addrs: self.inner.local_addrs.clone(),
        };
        let intro: Introduction = self
            .inner
            .rendezvous
            .caller()
            .call_timeout(config.connect_timeout, wire::CONNECT, &[ask])
            .await
            .map_err(Error::from_rendezvous)?;
        let deadline = started + config.connect_timeout;
        self.establish(intro, deadline).await
    }

    /// The next peer that reached this node, or `None` once the node is closed.
    pub async fn accept(&self) -> Option<P2pSession> {
        self.inner.incoming.lock().await.recv().await
    }

    /// Ends the rendezvous session (releasing the name). Sessions with other peers go on.
    pub fn close(&self) {
        self.inner.rendezvous.close();
    }

    /// The rendezvous introduced a peer that asked for this one: punch back at once.
    fn introduced(&self, intro: Introduction) -> Result<bool, String> {
        if intro.fingerprint == self.fingerprint() {
            return Err("that is this node's own certificate".into());
        }
        let Ok(slot) = self.inner.incoming_slots.clone().try_acquire_owned() else {
            return Err("too many introductions under way".into());
        };
        let deadline = Instant::now() + self.inner.config.connect_timeout;
        // Expect the peer before answering, so that its first packets find us ready.
        let Some(expecting) = self.inner.router.expect(intro.fingerprint) else {
            return Err("an introduction with that peer is under way".into());
        };
        let node = self.clone();
        tokio::spawn(async move {
            let who = intro.fingerprint;
            match node.establish_expecting(intro, deadline, expecting).await {
                Ok(session) => {
                    let _ = node.inner.incoming_tx.send(session).await;
                }
                Err(e) => {
                    tracing::debug!(peer = %who, error = %e, "p2p: incoming peer not reached")
                }
            }
            drop(slot);
        });
        Ok(true)
    }

    async fn establish(&self, intro: Introduction, deadline: Instant) -> Result<P2pSession, Error> {
        let Some(expecting) = self.inner.router.expect(intro.fingerprint) else {
            return Err(Error::Unreachable(
                intro.name,
                "an introduction with that peer is under way".into(),
            ));
        };
        self.establish_expecting(intro, deadline, expecting).await
    }

    /// Punches (as the dialer when this node's fingerprint is the lower one, else as the
    /// acceptor), then relays when no direct connection came in time.
    async fn establish_expecting(
        &self,
        intro: Introduction,
        deadline: Instant,
        expecting: (Expecting, mpsc::Receiver<quinn::Connection>),
    ) -> Result<P2pSession, Error> {
        let (_guard, mut accepted) = expecting;
        let config = &self.inner.config;
        let dialer = self.fingerprint() < intro.fingerprint;
        let candidates = candidates(&intro, config.max_candidates);
        let relay_at = Instant::now() + config.relay_after;
        let direct = if config.relay_after.is_zero() || candidates.is_empty() {
            None
        } else if dialer {
            self.punch_dial(&intro, &candidates, relay_at, deadline, &mut accepted)
                .await
        } else {
            // The acceptor joins the relay at once and takes whichever comes first: the
            // dialer's selected connection, or the relay (which the dialer joins only once it
            // gave up punching).
            tokio::select! {
                conn = self.punch_accept(&intro, &candidates, deadline, &mut accepted) => conn,
                relayed = tokio::time::timeout_at(deadline, self.relay(&intro, false)) => {
                    return match relayed {
                        Ok(r) => r,
                        Err(_) => Err(Error::Unreachable(intro.name, "timed out".into())),
                    };
                }
            }
        };
        if let Some(conn) = direct {
            let remote_addr = Some(canonical(conn.remote_address()));
            let session = qtalk_mux::quic::over_connection(conn, config.session.clone());
            return Ok(P2pSession {
                session: vouched(session, &intro, Path::Direct),
                path: Path::Direct,
                name: intro.name,
                fingerprint: intro.fingerprint,
                remote_addr,
            });
        }
        match tokio::time::timeout_at(deadline, self.relay(&intro, dialer)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unreachable(intro.name, "timed out".into())),
        }
    }

    /// The dialer's side of punching: fresh connection attempts to every candidate (at
    /// growing intervals up to `redial_interval`) until `relay_at`; each attempt that completes a handshake with the
    /// expected certificate asks the acceptor to select it, and the first one confirmed is
    /// kept. A selection under way at `relay_at` is waited for (until `deadline`), since the
    /// acceptor may have taken it already.
    async fn punch_dial(
        &self,
        intro: &Introduction,
        candidates: &[SocketAddr],
        relay_at: Instant,
        deadline: Instant,
        accepted: &mut mpsc::Receiver<quinn::Connection>,
    ) -> Option<quinn::Connection> {
        let config = &self.inner.config;
        let tls = pinned_client(&self.inner.identity, intro.fingerprint).ok()?;
        let client = qtalk_mux::quic::client_config(tls, &config.session).ok()?;
        let gate = Arc::new(Mutex::new(Gate::default()));
        let mut attempts = JoinSet::new();
        // The first attempts come quicker: the other side's packets may open its NAT any
        // moment now.
        let mut pause = (config.redial_interval / 10).max(Duration::from_millis(1));
        let mut next = Instant::now();
        let mut past = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next), if !past => {
                    next = Instant::now() + pause;
                    pause = (pause * 2).min(config.redial_interval);
                    for &addr in candidates {
                        match self.inner.endpoint.connect_with(client.clone(), addr, PEER_SERVER_NAME) {
                            Ok(connecting) => {
                                attempts.spawn(attempt(connecting, addr, gate.clone()));
                            }
                            Err(e) => tracing::debug!(%addr, error = %e, "p2p: cannot dial"),
                        }
                    }
                }
                Some(done) = attempts.join_next() => {
                    if let Ok(Some(conn)) = done {
                        attempts.abort_all();
                        return Some(conn);
                    }
                    if past && lock(&gate).selecting == 0 {
                        attempts.abort_all();
                        return None;
                    }
                }
                // The acceptor's own attempts, which only opened its NAT: not kept.
                Some(conn) = accepted.recv() => {
                    conn.close(quinn::VarInt::from_u32(0), b"the dialer keeps its own");
                }
                _ = tokio::time::sleep_until(relay_at), if !past => {
                    past = true;
                    let mut gate = lock(&gate);
                    gate.closed = true;
                    if gate.selecting == 0 {
                        attempts.abort_all();
                        return None;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    attempts.abort_all();
                    return None;
                }
            }
        }
    }

    /// The acceptor's side of punching: dials every candidate once (its packets open this
    /// side's NAT to the dialer; the connections are not used) and waits for the dialer to
    /// select one of the connections it made.
    async fn punch_accept(
        &self,
        intro: &Introduction,
        candidates: &[SocketAddr],
        deadline: Instant,
        accepted: &mut mpsc::Receiver<quinn::Connection>,
    ) -> Option<quinn::Connection> {
        let config = &self.inner.config;
        let mut openers = JoinSet::new();
        if let Ok(tls) = pinned_client(&self.inner.identity, intro.fingerprint) {
            if let Ok(client) = qtalk_mux::quic::client_config(tls, &config.session) {
                for &addr in candidates {
                    if let Ok(connecting) =
                        self.inner
                            .endpoint
                            .connect_with(client.clone(), addr, PEER_SERVER_NAME)
                    {
                        openers.spawn(async move {
                            if let Ok(conn) = connecting.await {
                                conn.close(quinn::VarInt::from_u32(0), b"the dialer keeps its own");
                            }
                        });
                    }
                }
            }
        }
        let mut waiting = JoinSet::new();
        loop {
            tokio::select! {
                Some(conn) = accepted.recv() => {
                    if waiting.len() >= ROUTE_QUEUE {
                        conn.close(quinn::VarInt::from_u32(0), b"too many attempts");
                        continue;
                    }
                    waiting.spawn(async move {
                        match tokio::time::timeout_at(deadline, selected(&conn)).await {
                            Ok(Ok(())) => Some(conn),
                            _ => None,
                        }
                    });
                }
                Some(done) = waiting.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return Some(conn);
                    }
                }
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// Joins the introduction's relay and runs TLS (the dialer as client) and a qmux session
    /// inside it.
    async fn relay(&self, intro: &Introduction, dialer: bool) -> Result<P2pSession, Error> {
        let caller = self.inner.rendezvous.caller();
        let mut stream = caller
            .call_raw(
                wire::RELAY,
                &[wire::Relay {
                    relay: intro.relay.clone(),
                }],
            )
            .await
            .map_err(Error::from_rendezvous)?;
        if !stream.is_continued() {
            return Err(Error::Unreachable(
                intro.name.clone(),
                "the rendezvous did not open the relay".into(),
            ));
        }
        let _: Value = stream.receive().await.map_err(Error::from_rendezvous)?;
        let identity = &self.inner.identity;
        let config = self.inner.config.session.clone();
        let session = if dialer {
            let tls = pinned_client(identity, intro.fingerprint)?;
            let name = rustls::pki_types::ServerName::try_from(PEER_SERVER_NAME)
                .map_err(|e| Error::Io(std::io::Error::other(e)))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
                .connect(name, stream)
                .await?;
            let info = relay_info(tls.get_ref().1.peer_certificates());
            Session::new(tls, config).with_connection_info(info)
        } else {
            let tls = peer_server(identity, Allowed::One(intro.fingerprint))?;
            let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls))
                .accept(stream)
                .await?;
            let info = relay_info(tls.get_ref().1.peer_certificates());
            Session::new(tls, config).with_connection_info(info)
        };
        Ok(P2pSession {
            session: vouched(session, intro, Path::Relayed),
            path: Path::Relayed,
            name: intro.name.clone(),
            fingerprint: intro.fingerprint,
            remote_addr: None,
        })
    }
}

/// A relayed session's connection: TLS (end to end with the peer, inside the relay) and the
/// peer's certificate; its address is not known.
fn relay_info(
    certs: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> qtalk_mux::ConnectionInfo {
    let certs = certs
        .unwrap_or_default()
        .iter()
        .map(|c| qtalk_mux::Certificate::from_der(c.as_ref().to_vec()))
        .collect();
    qtalk_mux::ConnectionInfo::new(qtalk_mux::TransportKind::Tls)
        .with_tls(qtalk_mux::TlsInfo::new().with_peer_certificates(certs))
}

/// The other peer's addresses to try: the observed one first, then its local ones.
fn candidates(intro: &Introduction, max: usize) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for addr in std::iter::once(intro.public_addr).chain(intro.local_addrs.iter().copied()) {
        let addr = canonical(addr);
        if addr.ip().is_unspecified() || addr.port() == 0 || out.contains(&addr) {
            continue;
        }
        out.push(addr);
        if out.len() == max {
            break;
        }
    }
    out
}

/// Selections under way, and whether new ones may start.
#[derive(Default)]
struct Gate {
    closed: bool,
    selecting: usize,
}

/// One connection attempt of the dialer: the handshake, then the selection unless punching
/// is over by then.
async fn attempt(
    connecting: quinn::Connecting,
    addr: SocketAddr,
    gate: Arc<Mutex<Gate>>,
) -> Option<quinn::Connection> {
    let conn = match connecting.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::trace!(%addr, error = %e, "p2p: attempt failed");
            return None;
        }
    };
    {
        let mut gate = lock(&gate);
        if gate.closed {
            return None;
        }
        gate.selecting += 1;
    }
    let result = select_conn(&conn).await;
    lock(&gate).selecting -= 1;
    match result {
        Ok(()) => Some(conn),
        Err(e) => {
            tracing::debug!(%addr, error = %e, "p2p: selection failed");
            None
        }
    }
}

/// The dialer's selection of a connection: `SELECT` on a new stream, answered `SELECTED`.
async fn select_conn(conn: &quinn::Connection) -> std::io::Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(wire::SELECT).await?;
    send.finish()?;
    let answer = recv.read_to_end(64).await.map_err(std::io::Error::other)?;
    if answer == wire::SELECTED {
        Ok(())
    } else {
        Err(std::io::Error::other("unexpected answer to the selection"))
    }
}

/// The acceptor's side of [`select_conn`].
async fn selected(conn: &quinn::Connection) -> std::io::Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let ask = recv.read_to_end(64).await.map_err(std::io::Error::other)?;
    if ask != wire::SELECT {
        return Err(std::io::Error::other("unexpected selection message"));
    }
    send.write_all(wire::SELECTED).await?;
    send.finish()?;
    Ok(())
}

/// Accepts QUIC connections on the node's endpoint (only expected peers pass the TLS check)
/// and hands them to their introductions.
async fn accept_loop(
    endpoint: quinn::Endpoint,
    router: Arc<Router>,
    limit: Duration,
    max_handshakes: usize,
) {
    let handshakes = Arc::new(Semaphore::new(max_handshakes));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            match tokio::time::timeout(limit, incoming).await {
                Ok(Ok(conn)) => router.deliver(conn),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "p2p: incoming handshake failed"),
                Err(_) => tracing::debug!(%peer, "p2p: incoming handshake timed out"),
            }
            drop(permit);
        });
    }
}
