//! Listeners that yield a [`Session`] per accepted connection.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, ToSocketAddrs};

use crate::{transport, Config, Session};

enum Kind {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
    #[cfg(feature = "websocket")]
    Ws(transport::ws::WsListener),
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicListener),
}

/// Accepts connections on a TCP or Unix socket, or WebSocket connections, and runs a session
/// on each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = qmux::Listener::bind_tcp("127.0.0.1:0", qmux::Config::default()).await?;
/// let addr = listener.local_addr()?;
/// tokio::spawn(async move {
///     while let Ok(session) = listener.accept().await {
///         tokio::spawn(async move { while let Some(_ch) = session.accept().await {} });
///     }
/// });
/// let session = qmux::transport::connect_tcp(addr, qmux::Config::default()).await?;
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
            kind: Kind::Tcp(TcpListener::bind(addr).await?),
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
            kind: Kind::Ws(transport::ws::WsListener::new(
                TcpListener::bind(addr).await?,
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
                let (r, w) = stream.into_split();
                Ok(Session::from_split(r, w, self.config.clone()))
            }
            #[cfg(feature = "websocket")]
            Kind::Ws(l) => l.accept(&self.config).await,
            #[cfg(feature = "quic")]
            Kind::Quic(l) => l.accept(&self.config).await,
        }
    }

    /// The TCP (or, for QUIC, UDP) address listened on (an error for Unix sockets).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.kind {
            Kind::Tcp(l) => l.local_addr(),
            #[cfg(feature = "websocket")]
            Kind::Ws(l) => l.local_addr(),
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
