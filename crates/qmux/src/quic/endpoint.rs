//! The client side's UDP sockets: [`Endpoint`], shared by every connection dialed through it,
//! and the dialing of every address a name resolves to.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::ToSocketAddrs;

use super::invalid;
use crate::{Config, Session};

/// A QUIC client endpoint: a UDP socket and its driver, reused by every connection dialed
/// through it (one socket per address family, bound on first use to an ephemeral port, or one
/// socket at the address given to [`Endpoint::bind`]).
///
/// A handle: clones share the sockets. Every [`Config`] carries one (its clones share it), so
/// that [`quic::connect`](super::connect) with the same configuration reuses one socket; give
/// configurations an endpoint of your own with
/// [`ConfigBuilder::quic_endpoint`](crate::ConfigBuilder::quic_endpoint), or dial through one
/// with [`Endpoint::connect`].
///
/// Dialing tries every address a name resolves to, as Happy Eyeballs (RFC 8305) does: the
/// next attempt starts when the previous one failed or after
/// [`ConfigBuilder::connect_attempt_delay`](crate::ConfigBuilder::connect_attempt_delay)
/// (default 250 ms), and the first handshake to finish wins. So `localhost` reaches a server
/// bound to `127.0.0.1` when it resolves to `::1` first.
///
/// A socket's driver runs on the tokio runtime of the first connection made on it; when that
/// runtime is gone, the next connection binds a new socket.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let identity = qtalk_mux::tls::self_signed(&["localhost"])?;
/// let server_tls = qtalk_mux::tls::server_config(identity.certs.clone(), identity.key)?;
/// let listener = qtalk_mux::Listener::bind_quic("127.0.0.1:0", server_tls, Default::default()).await?;
/// let port = listener.local_addr()?.port();
/// tokio::spawn(async move {
///     while let Ok(session) = listener.accept().await {
///         tokio::spawn(async move { session.wait().await });
///     }
/// });
///
/// let endpoint = qtalk_mux::quic::Endpoint::new();
/// let tls = qtalk_mux::tls::client_config(identity.certs)?;
/// let a = endpoint.connect(("localhost", port), "localhost", tls.clone(), Default::default()).await?;
/// let b = endpoint.connect(("localhost", port), "localhost", tls, Default::default()).await?;
/// assert_eq!(endpoint.local_addrs().len(), 1); // one socket for both
/// a.close();
/// b.close();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where [`Endpoint::bind`] put the one socket; `None`: one per family, on demand.
    bind: Option<SocketAddr>,
    v4: Mutex<Option<quinn::Endpoint>>,
    v6: Mutex<Option<quinn::Endpoint>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addrs", &self.local_addrs())
            .finish()
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new()
    }
}

impl Endpoint {
    /// An endpoint that binds one socket per address family, on an ephemeral port, when it
    /// first dials an address of that family.
    pub fn new() -> Endpoint {
        Endpoint {
            inner: Arc::new(Inner {
                bind: None,
                v4: Mutex::new(None),
                v6: Mutex::new(None),
            }),
        }
    }

    /// An endpoint with one socket bound to `addr` now (an IPv6 address also reaches IPv4
    /// peers where the system allows dual-stack sockets). Must be called within a tokio
    /// runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        let endpoint = quinn::Endpoint::client(addr)?;
        let (v4, v6) = if addr.is_ipv6() {
            (None, Some(endpoint))
        } else {
            (Some(endpoint), None)
        };
        Ok(Endpoint {
            inner: Arc::new(Inner {
                bind: Some(addr),
                v4: Mutex::new(v4),
                v6: Mutex::new(v6),
            }),
        })
    }

    /// The addresses of the sockets bound so far.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        [&self.inner.v4, &self.inner.v6]
            .into_iter()
            .filter_map(|slot| {
                let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
                slot.as_ref().and_then(|e| e.local_addr().ok())
            })
            .collect()
    }

    /// Dials a QUIC server through this endpoint and runs a session over the connection:
    /// [`quic::connect`](super::connect) on this endpoint rather than the configuration's.
    pub async fn connect(
        &self,
        addr: impl ToSocketAddrs,
        server_name: &str,
        tls: rustls::ClientConfig,
        config: Config,
    ) -> io::Result<Session> {
        let client = super::client_config(tls, &config)?;
        let dialed = self.dial(addr, server_name, client, &config).await?;
        Ok(super::client_session(dialed, server_name, config))
    }

    /// The quinn endpoint that reaches `remote`, bound now if need be, or anew with `fresh`.
    fn for_remote(&self, remote: SocketAddr, fresh: bool) -> io::Result<quinn::Endpoint> {
        let inner = &self.inner;
        let (slot, local): (_, SocketAddr) = match inner.bind {
            // The one socket: quinn maps IPv4 peers for an IPv6 socket.
            Some(bound) if bound.is_ipv6() => (&inner.v6, bound),
            Some(bound) => (&inner.v4, bound),
            None if remote.is_ipv6() => (&inner.v6, (Ipv6Addr::UNSPECIFIED, 0).into()),
            None => (&inner.v4, (Ipv4Addr::UNSPECIFIED, 0).into()),
        };
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(endpoint) if !fresh => Ok(endpoint.clone()),
            _ => {
                // The old socket goes first, so that a fixed address can be bound again.
                *slot = None;
                let endpoint = quinn::Endpoint::client(local)?;
                *slot = Some(endpoint.clone());
                Ok(endpoint)
            }
        }
    }

    /// Starts a handshake with `remote`. A socket whose driver is gone (its runtime ended)
    /// refuses at once; it is replaced.
    fn start(
        &self,
        remote: SocketAddr,
        server_name: &str,
        client: &quinn::ClientConfig,
    ) -> io::Result<(quinn::Endpoint, quinn::Connecting)> {
        let connect = |e: quinn::Endpoint| {
            let connecting = e.connect_with(client.clone(), remote, server_name)?;
            Ok((e, connecting))
        };
        match connect(self.for_remote(remote, false)?) {
            Err(quinn::ConnectError::EndpointStopping) => {
                connect(self.for_remote(remote, true)?).map_err(invalid)
            }
            other => other.map_err(invalid),
        }
    }

    /// Connects to every address `addr` resolves to, staggered (see [`Endpoint`]); the first
    /// handshake done wins, the others are abandoned.
    pub(crate) async fn dial(
        &self,
        addr: impl ToSocketAddrs,
        server_name: &str,
        client: quinn::ClientConfig,
        config: &Config,
    ) -> io::Result<Dialed> {
        use futures_util::stream::{FuturesUnordered, StreamExt};
        let mut addrs = tokio::net::lookup_host(addr).await?.peekable();
        if addrs.peek().is_none() {
            return Err(invalid("the address resolved to nothing"));
        }
        let mut attempts = FuturesUnordered::new();
        let mut last_error = None;
        loop {
            if let Some(remote) = addrs.next() {
                match self.start(remote, server_name, &client) {
                    Ok((endpoint, connecting)) => attempts.push(async move {
                        let conn = connecting.await.map_err(io::Error::from)?;
                        Ok(Dialed { conn, endpoint })
                    }),
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                }
            }
            if attempts.is_empty() {
                return Err(last_error.unwrap_or_else(|| invalid("no address could be tried")));
            }
            let more = addrs.peek().is_some();
            tokio::select! {
                Some(done) = attempts.next() => match done {
                    Ok(conn) => return Ok(conn),
                    Err(e) => last_error = Some(e),
                },
                () = tokio::time::sleep(config.connect_attempt_delay), if more => {}
            }
        }
    }
}

/// A connection made by [`Endpoint::dial`], and the socket it runs on.
pub(crate) struct Dialed {
    pub(crate) conn: quinn::Connection,
    pub(crate) endpoint: quinn::Endpoint,
}

/// After a connection on `endpoint` closed: lets the close reach the peer before the process
/// may exit, unless other connections keep the socket busy (waiting for them would wait for
/// them to end; the socket stays open for them anyway).
pub(crate) async fn drain(endpoint: &quinn::Endpoint, limit: Duration) {
    if endpoint.open_connections() <= 1 {
        let _ = tokio::time::timeout(limit, endpoint.wait_idle()).await;
    }
}
