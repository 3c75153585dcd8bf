//! The server side: [`QuicListener`] accepts connections on one UDP endpoint and hands each to
//! the base layer its negotiated ALPN protocol names (QUIC's `qtalk-quic`, or WebTransport's
//! `h3` with the `webtransport` feature).

use std::io;
use std::net::SocketAddr;

use tokio::net::ToSocketAddrs;
use tokio::task::JoinSet;

use super::{invalid, server_config};
use crate::{Config, Session};

/// Accepts QUIC connections for [`Listener::bind_quic`](crate::Listener::bind_quic) and
/// `bind_webtransport`, running handshakes concurrently, each within the handshake timeout.
pub(crate) struct QuicListener {
    endpoint: quinn::Endpoint,
    handshakes: tokio::sync::Mutex<JoinSet<Option<Session>>>,
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
                    let config = config.clone();
                    let local = self.endpoint.local_addr().ok();
                    handshakes.spawn(async move {
                        let peer = incoming.remote_address();
                        match tokio::time::timeout(limit, handshake(incoming, config)).await {
                            Ok(Ok(session)) => Some(match local {
                                Some(a) => {
                                    let info = session.connection_info().clone();
                                    session.with_connection_info(info.with_local_addr(a))
                                }
                                None => session,
                            }),
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
                    if let Ok(Some(session)) = done {
                        return Ok(session);
                    }
                }
            }
        }
    }
}

/// The QUIC handshake, then, for WebTransport, HTTP/3's; a session over the result.
async fn handshake(incoming: quinn::Incoming, config: Config) -> io::Result<Session> {
    let conn = incoming.await?;
    #[cfg(feature = "webtransport")]
    if alpn(&conn).as_deref() == Some(crate::webtransport::ALPN) {
        return crate::webtransport::accept(conn, config).await;
    }
    Ok(super::over_connection(conn, config))
}

/// The ALPN protocol the handshake settled on.
#[cfg(feature = "webtransport")]
fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    let data = conn.handshake_data()?;
    let data = data
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?;
    data.protocol
}
