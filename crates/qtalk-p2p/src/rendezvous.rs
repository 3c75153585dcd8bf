//! The rendezvous: a qtalk service over QUIC where peers register names, get introduced to
//! each other, and, when no direct path exists, have their bytes relayed.
//!
//! Each peer connects as a QUIC client presenting its own certificate (TLS client
//! authentication), so the fingerprint the rendezvous vouches for is that of a key the peer
//! proved it holds; the address it vouches for is the connection's remote address.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use qtalk::codec::Json;
use qtalk::rpc::{func, handler_fn, Call, Caller, Handler, RespondMux, Responder, Server};
use qtalk::Value;
use qtalk_mux::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::error::{NAME_TAKEN, UNKNOWN_NAME};
use crate::identity::{server_requiring, Allowed};
use crate::wire::{self, Introduction, Registered};
use crate::{Error, Fingerprint, RendezvousConfig};

/// The rendezvous's counters, as [`Rendezvous::stats`] and the `Stats` call report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Peer connections open now.
    pub sessions: u64,
    /// Names registered now.
    pub names: u64,
    /// `Register` calls answered.
    pub registers: u64,
    /// `Connect` calls answered.
    pub connects: u64,
    /// `Relay` calls received.
    pub relay_calls: u64,
    /// Relays where both peers joined.
    pub relays: u64,
    /// Relays forwarding now.
    pub relays_active: u64,
    /// Bytes forwarded by relays, both directions.
    pub relayed_bytes: u64,
}

#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    registers: AtomicU64,
    connects: AtomicU64,
    relay_calls: AtomicU64,
    relays: AtomicU64,
    relays_active: AtomicU64,
    relayed_bytes: AtomicU64,
}

/// A registered name.
struct Registration {
    session: u64,
    fingerprint: Fingerprint,
    public_addr: SocketAddr,
    local_addrs: Vec<SocketAddr>,
    caller: Caller,
}

/// One side of a relay, handed to the other side's call task, which forwards. The handler
/// that handed it over keeps running until `done` is dropped: a handler that returns has its
/// call answered for it.
struct Leg {
    responder: Responder,
    call: Call,
    done: Option<oneshot::Sender<()>>,
}

/// The relay of one introduction.
struct RelaySlot {
    sides: [Fingerprint; 2],
    waiting: Option<(Fingerprint, oneshot::Sender<Leg>)>,
}

struct Shared {
    config: RendezvousConfig,
    names: Mutex<HashMap<String, Registration>>,
    relays: Mutex<HashMap<String, RelaySlot>>,
    counters: Counters,
    next_session: AtomicU64,
}

/// A running rendezvous service (see the [crate documentation](crate)): an rpc
/// [`Server`] on a QUIC listener, with its limits and shutdown. Dropping it stops accepting
/// and closes every peer connection.
pub struct Rendezvous {
    shared: Arc<Shared>,
    server: Server,
    local_addr: io::Result<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous")
            .field("local_addr", &self.local_addr.as_ref().ok())
            .finish_non_exhaustive()
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        self.server.close();
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An IPv4 address seen through a dual-stack socket, as plain IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        v4 => v4,
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Rendezvous {
    /// Listens on UDP `addr`, presenting `certs` (leaf first) and `key` to peers (who check
    /// them as they check any QUIC server: a CA, the certificate itself, or not at all).
    pub async fn bind(
        addr: SocketAddr,
        certs: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        config: RendezvousConfig,
    ) -> Result<Rendezvous, Error> {
        config.check()?;
        // Client certificates are asked for but not required: a peer without one may only
        // call `Stats`; the fingerprint of one that has one is in its session's connection.
        let tls = server_requiring(certs, key, Allowed::Any)?;
        let session_config = config
            .session
            .to_builder()
            .handshake_timeout(config.handshake_timeout)
            .build()
            .map_err(|_| Error::Config("handshake_timeout"))?;
        let listener = qtalk_mux::Listener::bind_quic(addr, tls, session_config).await?;
        let options = config
            .rpc_options()?
            .to_builder()
            .max_sessions(config.max_sessions)
            .build()
            .map_err(|_| Error::Config("max_sessions must be at least 1"))?;
        let shared = Arc::new(Shared {
            config,
            names: Mutex::new(HashMap::new()),
            relays: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            next_session: AtomicU64::new(1),
        });
        let make = {
            let shared = shared.clone();
            move |session: &qtalk_mux::Session| session_handler(&shared, session)
        };
        let server = Server::per_session(make, Json, options);
        let local_addr = listener.local_addr();
        let task = tokio::spawn({
            let server = server.clone();
            async move {
                if let Err(e) = server.serve(listener).await {
                    tracing::warn!(error = %e, "rendezvous: stopped accepting");
                }
            }
        });
        Ok(Rendezvous {
            shared,
            server,
            local_addr,
            task,
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.local_addr {
            Ok(a) => Ok(*a),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// Stops gracefully: no new peers or calls are taken (calls arriving meanwhile are
    /// refused), calls in flight (relays included) may finish for up to `grace`, then every
    /// peer connection is closed.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.server.shutdown(grace).await;
        self.task.abort();
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

impl Shared {
    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            sessions: c.sessions.load(Ordering::Relaxed),
            names: lock(&self.names).len() as u64,
            registers: c.registers.load(Ordering::Relaxed),
            connects: c.connects.load(Ordering::Relaxed),
            relay_calls: c.relay_calls.load(Ordering::Relaxed),
            relays: c.relays.load(Ordering::Relaxed),
            relays_active: c.relays_active.load(Ordering::Relaxed),
            relayed_bytes: c.relayed_bytes.load(Ordering::Relaxed),
        }
    }
}

/// What the handlers of one peer connection know about it.
#[derive(Clone)]
struct Conn {
    shared: Arc<Shared>,
    id: u64,
    fingerprint: Option<Fingerprint>,
    public_addr: SocketAddr,
    /// The name this connection registered.
    name: Arc<Mutex<Option<String>>>,
}

/// The handlers of one peer connection, made when the server starts serving it; a task
/// releases what it registered when it ends.
fn session_handler(shared: &Arc<Shared>, session: &qtalk_mux::Session) -> Arc<dyn Handler> {
    let info = session.connection_info();
    // None for a client without a certificate: it may only ask for `Stats`.
    let fingerprint = info
        .tls()
        .and_then(|t| t.peer_certificate())
        .map(|c| Fingerprint::of(c.as_der()));
    let public_addr = info
        .remote_addr()
        .map(canonical)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let me = Conn {
        id: shared.next_session.fetch_add(1, Ordering::Relaxed),
        shared: shared.clone(),
        fingerprint,
        public_addr,
        name: Arc::new(Mutex::new(None)),
    };
    let mux = RespondMux::new();
    let handlers = [
        (wire::REGISTER, register_handler(me.clone())),
        (wire::CONNECT, connect_handler(me.clone())),
        (wire::RELAY, relay_handler(me.clone())),
        (wire::STATS, stats_handler(shared.clone())),
    ];
    for (selector, handler) in handlers {
        if let Err(e) = mux.handle_arc(selector, handler) {
            tracing::error!(error = %e, "rendezvous: cannot route {selector}");
        }
    }
    shared.counters.sessions.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%public_addr, ?fingerprint, "rendezvous: peer connected");
    let session = session.clone();
    tokio::spawn(async move {
        let _ = session.wait().await;
        let shared = &me.shared;
        shared.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        let name = lock(&me.name).take();
        if let Some(name) = name {
            let mut names = lock(&shared.names);
            if names.get(&name).is_some_and(|r| r.session == me.id) {
                names.remove(&name);
                tracing::debug!(%name, "rendezvous: name released");
            }
        }
    });
    Arc::new(mux)
}

type DynHandler = Arc<dyn Handler>;

fn register_handler(me: Conn) -> DynHandler {
    Arc::new(func(move |call: Call, (reg,): (wire::Register,)| {
        let me = me.clone();
        async move { me.register(reg, call.caller()) }
    }))
}

fn connect_handler(me: Conn) -> DynHandler {
    Arc::new(func(move |_call: Call, (c,): (wire::Connect,)| {
        let me = me.clone();
        async move { me.connect(c).await }
    }))
}

fn relay_handler(me: Conn) -> DynHandler {
    Arc::new(handler_fn(move |responder: Responder, call: Call| {
        let me = me.clone();
        async move { me.relay(responder, call).await }
    }))
}

fn stats_handler(shared: Arc<Shared>) -> DynHandler {
    Arc::new(func(move |_call: Call, (): ()| {
        let stats = shared.stats();
        async move { Ok::<_, String>(stats) }
    }))
}

/// The refusal of the calls that need the caller's certificate.
const NO_CERTIFICATE: &str = "this call needs a client certificate on the connection";

impl Conn {
    fn config(&self) -> &RendezvousConfig {
        &self.shared.config
    }

    fn register(&self, reg: wire::Register, caller: &Caller) -> Result<Registered, String> {
        let Some(fingerprint) = self.fingerprint else {
            return Err(NO_CERTIFICATE.into());
        };
        let config = self.config();
        if !valid_name(&reg.name, config.max_name_len) {
            return Err(format!(
                "invalid name: up to {} ASCII letters, digits, '.', '-', '_'",
                config.max_name_len
            ));
        }
        if reg.fingerprint != fingerprint {
            return Err("the fingerprint is not that of this connection's certificate".into());
        }
        let mut local_addrs = reg.local_addrs;
        local_addrs.truncate(config.max_local_addrs);
        let mut mine = lock(&self.name);
        let mut names = lock(&self.shared.names);
        match names.get(&reg.name) {
            Some(r) if r.session != self.id => return Err(format!("{NAME_TAKEN}{}", reg.name)),
            Some(_) => {}
            None if names.len() >= config.max_names => {
                return Err("too many names registered".into())
            }
            None => {}
        }
        // One name per connection: a new one replaces the old.
        if let Some(old) = mine.take() {
            if old != reg.name {
                names.remove(&old);
            }
        }
        names.insert(
            reg.name.clone(),
            Registration {
                session: self.id,
                fingerprint,
                public_addr: self.public_addr,
                local_addrs,
                caller: caller.clone(),
            },
        );
        *mine = Some(reg.name);
        self.shared
            .counters
            .registers
            .fetch_add(1, Ordering::Relaxed);
        Ok(Registered {
            public_addr: self.public_addr,
        })
    }

    async fn connect(&self, c: wire::Connect) -> Result<Introduction, String> {
        let Some(me) = self.fingerprint else {
            return Err(NO_CERTIFICATE.into());
        };
        let config = self.config();
        let (target, fingerprint, public_addr, target_locals) = {
            let names = lock(&self.shared.names);
            let Some(r) = names.get(&c.name) else {
                return Err(format!("{UNKNOWN_NAME}{}", c.name));
            };
            (
                r.caller.clone(),
                r.fingerprint,
                r.public_addr,
                r.local_addrs.clone(),
            )
        };
        if fingerprint == me {
            return Err("the target presents this connection's own certificate".into());
        }
        let relay = relay_id();
        {
            let mut relays = lock(&self.shared.relays);
            let active = self.shared.counters.relays_active.load(Ordering::Relaxed) as usize;
            if relays.len() + active >= config.max_relays {
                return Err("too many relays".into());
            }
            relays.insert(
                relay.clone(),
                RelaySlot {
                    sides: [me, fingerprint],
                    waiting: None,
                },
            );
        }
        // The relay expires unless both peers joined in time.
        let (shared, id, limit) = (
            self.shared.clone(),
            relay.clone(),
            config.relay_join_timeout,
        );
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            lock(&shared.relays).remove(&id);
        });
        let mut local_addrs = c.local_addrs;
        local_addrs.truncate(config.max_local_addrs);
        let intro = Introduction {
            name: lock(&self.name).clone().unwrap_or_default(),
            fingerprint: me,
            public_addr: self.public_addr,
            local_addrs,
            relay: relay.clone(),
        };
        let answer = target
            .call_timeout::<_, Value>(config.introduce_timeout, wire::INCOMING, &[intro])
            .await;
        if let Err(e) = answer {
            lock(&self.shared.relays).remove(&relay);
            return Err(format!("{} did not take the introduction: {e}", c.name));
        }
        self.shared
            .counters
            .connects
            .fetch_add(1, Ordering::Relaxed);
        Ok(Introduction {
            name: c.name,
            fingerprint,
            public_addr,
            local_addrs: target_locals,
            relay,
        })
    }

    async fn relay(&self, responder: Responder, mut call: Call) {
        self.shared
            .counters
            .relay_calls
            .fetch_add(1, Ordering::Relaxed);
        let Some(me) = self.fingerprint else {
            let _ = responder.error(NO_CERTIFICATE).await;
            return;
        };
        let id = match call.params::<(wire::Relay,)>().await {
            Ok((r,)) => r.relay,
            Err(e) => {
                let _ = responder.error(e).await;
                return;
            }
        };
        enum Joined {
            Refused(&'static str),
            Second(oneshot::Sender<Leg>),
            First(oneshot::Receiver<Leg>),
        }
        let joined = {
            let mut relays = lock(&self.shared.relays);
            match relays.get_mut(&id) {
                None => Joined::Refused("unknown relay"),
                Some(slot) if !slot.sides.contains(&me) => {
                    Joined::Refused("not a party of this relay")
                }
                Some(slot) => match slot.waiting.take() {
                    Some((other, tx)) if other != me => {
                        relays.remove(&id);
                        Joined::Second(tx)
                    }
                    Some(waiting) => {
                        slot.waiting = Some(waiting);
                        Joined::Refused("already joined this relay")
                    }
                    None => {
                        let (tx, rx) = oneshot::channel();
                        slot.waiting = Some((me, tx));
                        Joined::First(rx)
                    }
                },
            }
        };
        let rx = match joined {
            Joined::Refused(why) => {
                let _ = responder.error(why).await;
                return;
            }
            Joined::Second(tx) => {
                let (done, finished) = oneshot::channel();
                let leg = Leg {
                    responder,
                    call,
                    done: Some(done),
                };
                match tx.send(leg) {
                    Ok(()) => {
                        let _ = finished.await;
                    }
                    Err(Leg { responder, .. }) => {
                        let _ = responder.error("the other peer left the relay").await;
                    }
                }
                return;
            }
            Joined::First(rx) => rx,
        };
        let cancelled = call.cancelled();
        let limit = self.config().relay_join_timeout;
        let other = tokio::select! {
            other = rx => other.ok(),
            _ = cancelled => None,
            _ = tokio::time::sleep(limit) => None,
        };
        let Some(other) = other else {
            // Gone, expired or given up: nobody can join any more.
            lock(&self.shared.relays).remove(&id);
            let _ = responder
                .error("the other peer did not join the relay")
                .await;
            return;
        };
        let counters = &self.shared.counters;
        counters.relays.fetch_add(1, Ordering::Relaxed);
        counters.relays_active.fetch_add(1, Ordering::Relaxed);
        let mine = Leg {
            responder,
            call,
            done: None,
        };
        forward(mine, other, &counters.relayed_bytes).await;
        counters.relays_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers both legs (continuing, `null`) and forwards bytes between them until both
/// directions ended.
async fn forward(a: Leg, b: Leg, counter: &AtomicU64) {
    let (wa, wb) = match tokio::join!(
        a.responder.continue_with(&Value::Null),
        b.responder.continue_with(&Value::Null)
    ) {
        (Ok(wa), Ok(wb)) => (wa, wb),
        _ => return,
    };
    tokio::join!(pump(a.call, wb, counter), pump(b.call, wa, counter));
    drop((a.done, b.done));
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    counter: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

/// 128 random bits as 32 hex digits.
fn relay_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("peer-b.home_1", 64));
        assert!(!valid_name("", 64));
        assert!(!valid_name("a b", 64));
        assert!(!valid_name("é", 64));
        assert!(!valid_name(&"a".repeat(65), 64));
    }

    #[test]
    fn mapped_addresses() {
        let mapped: SocketAddr = "[::ffff:198.18.0.2]:5000".parse().unwrap();
        assert_eq!(canonical(mapped), "198.18.0.2:5000".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
