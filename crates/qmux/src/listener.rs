//! Listeners that yield a [`Session`] per accepted connection.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, ToSocketAddrs};

use crate::{transport, Config, Session};

enum Kind {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

/// Accepts connections on a TCP or Unix socket and runs a session on each.
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
        }
    }

    /// The TCP address listened on (an error for Unix sockets).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.kind {
            Kind::Tcp(l) => l.local_addr(),
            #[cfg(unix)]
            Kind::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a Unix listener has no socket address",
            )),
        }
    }
}
