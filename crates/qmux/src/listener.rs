//! Listeners that yield a [`Session`] per accepted connection.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, ToSocketAddrs};

use crate::{transport, Config, Session};

enum Kind {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
    #[cfg(any(feature = "websocket", feature = "tls"))]
    Handshaking(Handshaking),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicListener),
}

/// What a TCP connection goes through before its session runs.
#[cfg(any(feature = "websocket", feature = "tls"))]
#[derive(Clone)]
enum Handshake {
    #[cfg(feature = "websocket")]
    Ws,
    #[cfg(all(feature = "websocket", feature = "tls"))]
    Wss(tokio_rustls::TlsAcceptor),
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// A TCP listener whose connections need a handshake (WebSocket, TLS) first; handshakes run
/// concurrently, each within its own deadline, and failed ones are skipped.
#[cfg(any(feature = "websocket", feature = "tls"))]
struct Handshaking {
    tcp: TcpListener,
    handshake: Handshake,
    pending: tokio::sync::Mutex<tokio::task::JoinSet<Option<Session>>>,
}

#[cfg(any(feature = "websocket", feature = "tls"))]
impl Handshaking {
    fn new(tcp: TcpListener, handshake: Handshake) -> Self {
        Handshaking {
            tcp,
            handshake,
            pending: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    async fn accept(&self, config: &Config) -> io::Result<Session> {
        let mut pending = self.pending.lock().await;
        loop {
            let room = pending.len() < config.max_handshakes;
            tokio::select! {
                accepted = self.tcp.accept(), if room => {
                    let (stream, peer) = accepted?;
                    let config = config.clone();
                    match self.handshake.clone() {
                        #[cfg(feature = "websocket")]
                        Handshake::Ws => pending.spawn(transport::ws::server_session(
                            stream,
                            peer,
                            #[cfg(feature = "tls")]
                            None,
                            config,
                        )),
                        #[cfg(all(feature = "websocket", feature = "tls"))]
                        Handshake::Wss(tls) => pending.spawn(transport::ws::server_session(
                            stream,
                            peer,
                            Some(tls),
                            config,
                        )),
                        #[cfg(feature = "tls")]
                        Handshake::Tls(tls) => pending.spawn(crate::tls::server_session(
                            stream, peer, tls, config,
                        )),
                    };
                }
                Some(done) = pending.join_next() => {
                    if let Ok(Some(session)) = done {
                        return Ok(session);
                    }
                }
            }
        }
    }
}

/// A TCP listener on the first address `addr` resolves to that binds, with the configured
/// accept backlog (`TcpListener::bind` asks for 1024, which a burst of connections overflows).
async fn bind_listener<A: ToSocketAddrs>(addr: A, config: &Config) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(config.listen_backlog))
        {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// Accepts connections (TCP, Unix socket, WebSocket, TLS, QUIC, WebTransport) and runs a
/// session on each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = qtalk_mux::Listener::bind_tcp("127.0.0.1:0", qtalk_mux::Config::default()).await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     while let Ok(session) = listener.accept().await {
///         tokio::spawn(async move { while let Some(_ch) = session.accept().await {} });
///     }
/// });
/// let session = qtalk_mux::transport::connect_tcp(addr, qtalk_mux::Config::default()).await?;
/// session.close();
/// # Ok(())
/// # }
/// ```
pub struct Listener {
    kind: Kind,
    config: Config,
}

impl Listener {
    /// Listens on a TCP address.
    pub async fn bind_tcp<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Listener> {
        Ok(Listener {
            kind: Kind::Tcp(bind_listener(addr, &config).await?),
            config,
        })
    }

    /// Listens on a Unix socket path.
    #[cfg(unix)]
    pub fn bind_unix<P: AsRef<std::path::Path>>(path: P, config: Config) -> io::Result<Listener> {
        Ok(Listener {
            kind: Kind::Unix(tokio::net::UnixListener::bind(path)?),
            config,
        })
    }

    /// Listens for WebSocket connections on a TCP address (plain `ws://`, no TLS), as the
    /// reference's `mux.ListenWS`: the upgrade is accepted on any path, without requiring an
    /// `Origin` header. Handshakes run concurrently (each has 10 s); connections whose
    /// handshake fails are dropped without an error from [`accept`](Listener::accept).
    #[cfg(feature = "websocket")]
    pub async fn bind_ws<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Listener> {
        Ok(Listener {
            kind: Kind::Handshaking(Handshaking::new(
                bind_listener(addr, &config).await?,
                Handshake::Ws,
            )),
            config,
        })
    }

    /// Listens for TLS connections on a TCP address and runs a session over each (qmux inside
    /// TLS; not in the reference). The settings must hold a certificate (see [`crate::tls`]).
    /// Handshakes run concurrently (each has 10 s); failed ones are skipped.
    #[cfg(feature = "tls")]
    pub async fn bind_tls<A: ToSocketAddrs>(
        addr: A,
        tls: rustls::ServerConfig,
        config: Config,
    ) -> io::Result<Listener> {
        Ok(Listener {
            kind: Kind::Handshaking(Handshaking::new(
                bind_listener(addr, &config).await?,
                Handshake::Tls(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls))),
            )),
            config,
        })
    }

    /// Listens for WebSocket connections over TLS (`wss://`) on a TCP address, as
    /// [`bind_ws`](Listener::bind_ws) after a TLS handshake with these settings.
    #[cfg(all(feature = "websocket", feature = "tls"))]
    pub async fn bind_wss<A: ToSocketAddrs>(
        addr: A,
        tls: rustls::ServerConfig,
        config: Config,
    ) -> io::Result<Listener> {
        Ok(Listener {
            kind: Kind::Handshaking(Handshaking::new(
                bind_listener(addr, &config).await?,
                Handshake::Wss(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls))),
            )),
            config,
        })
    }

    /// Listens for QUIC connections on a UDP address, as the reference's QUIC listener: each
    /// connection is a session whose channels are QUIC streams (see [`crate::quic`]). The TLS
    /// settings must hold a certificate (see [`crate::tls`]); ALPN `qtalk-quic` is offered unless
    /// they name protocols. Handshakes run concurrently; failed ones are skipped.
    #[cfg(feature = "quic")]
    pub async fn bind_quic<A: ToSocketAddrs>(
        addr: A,
        tls: rustls::ServerConfig,
        config: Config,
    ) -> io::Result<Listener> {
        Ok(Listener {
            kind: Kind::Quic(crate::quic::QuicListener::bind(addr, tls, &config).await?),
            config,
        })
    }

    /// Listens for WebTransport sessions (browsers' `new WebTransport("https://HOST:PORT/")`)
    /// and QUIC connections on one UDP address: each connection is dispatched by the ALPN
    /// protocol it negotiated, `h3` to WebTransport (see [`crate::webtransport`]), any other
    /// to QUIC (see [`crate::quic`]). The TLS settings must hold a certificate (for browsers
    /// without a CA, see [`tls::self_signed_for_browsers`](crate::tls::self_signed_for_browsers));
    /// `h3` and `qtalk-quic` are offered unless they name protocols. Any URL path is
    /// accepted. Handshakes (QUIC's, then HTTP/3's) run concurrently, each within the
    /// handshake timeout; failed ones are skipped.
    #[cfg(feature = "webtransport")]
    pub async fn bind_webtransport<A: ToSocketAddrs>(
        addr: A,
        mut tls: rustls::ServerConfig,
        config: Config,
    ) -> io::Result<Listener> {
        if tls.alpn_protocols.is_empty() {
            tls.alpn_protocols = vec![
                crate::webtransport::ALPN.to_vec(),
                crate::quic::ALPN.to_vec(),
            ];
        }
        Ok(Listener {
            kind: Kind::Quic(crate::quic::QuicListener::bind(addr, tls, &config).await?),
            config,
        })
    }

    /// Waits for the next connection and returns a session running over it.
    pub async fn accept(&self) -> io::Result<Session> {
        match &self.kind {
            Kind::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                Ok(transport::over_tcp(stream, self.config.clone()))
            }
            #[cfg(unix)]
            Kind::Unix(l) => {
                let (stream, _) = l.accept().await?;
                Ok(transport::over_unix(stream, self.config.clone()))
            }
            #[cfg(any(feature = "websocket", feature = "tls"))]
            Kind::Handshaking(l) => l.accept(&self.config).await,
            #[cfg(feature = "quic")]
            Kind::Quic(l) => l.accept(&self.config).await,
        }
    }

    /// The TCP (or, for QUIC, UDP) address listened on (an error for Unix sockets).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.kind {
            Kind::Tcp(l) => l.local_addr(),
            #[cfg(any(feature = "websocket", feature = "tls"))]
            Kind::Handshaking(l) => l.tcp.local_addr(),
            #[cfg(feature = "quic")]
            Kind::Quic(l) => l.local_addr(),
            #[cfg(unix)]
            Kind::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Unix listener has no socket address",
            )),
        }
    }
}
