//! QUIC rows: ours over QUIC (`ours-quic`, qtalk CBOR with QUIC as the base layer) and a bare
//! quinn stream (`quinn`, bulk only: the raw TCP protocol of [`crate::raw`] on one
//! bidirectional stream), both on UDP loopback with a fresh self-signed certificate.

use std::net::SocketAddr;
use std::time::Instant;

use qtalk::mux::quic::quinn;
use qtalk::mux::{tls, Config};

use crate::stats::{bulk_report, Report};
use crate::Direction;

fn server_tls() -> std::io::Result<tls::rustls::ServerConfig> {
    let id = tls::self_signed(&["localhost"])?;
    tls::server_config(id.certs, id.key)
}

/// A qtalk QUIC listener (what `ours-quic` serves on).
pub async fn listen_ours(addr: &str) -> std::io::Result<qtalk::mux::Listener> {
    qtalk::mux::Listener::bind_quic(addr, server_tls()?, Config::default()).await
}

/// A qtalk session over QUIC to `addr` (the certificate is not checked: a benchmark).
pub async fn connect_session(addr: &str) -> std::io::Result<qtalk::mux::Session> {
    qtalk::mux::quic::connect(
        addr,
        "localhost",
        tls::insecure_client_config(),
        Config::default(),
    )
    .await
}

/// A bare quinn endpoint; returns it with its address.
pub fn listen_bare(addr: &str) -> std::io::Result<quinn::Endpoint> {
    let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let server = qtalk::mux::quic::server_config(server_tls()?, &Config::default())?;
    quinn::Endpoint::server(server, addr)
}

/// Serves every stream of every connection as a raw connection.
pub async fn serve_bare(endpoint: quinn::Endpoint) -> std::io::Result<()> {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let _ = crate::raw::serve_conn(tokio::io::join(recv, send)).await;
                });
            }
        });
    }
    Ok(())
}

/// `size` bytes over one bare quinn stream.
pub async fn bulk_bare(
    system: &str,
    addr: &str,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let remote: SocketAddr = addr.parse()?;
    let endpoint = quinn::Endpoint::client((std::net::Ipv4Addr::UNSPECIFIED, 0).into())?;
    let client =
        qtalk::mux::quic::client_config(tls::insecure_client_config(), &Config::default())?;
    let conn = endpoint.connect_with(client, remote, "localhost")?.await?;
    let start = Instant::now();
    let (mut send, recv) = conn.open_bi().await?;
    send.write_all(match dir {
        Direction::Up => b"u",
        Direction::Down => b"d",
    })
    .await?;
    let moved = crate::raw::transfer(tokio::io::join(recv, send), dir, size).await?;
    let elapsed = start.elapsed();
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    if moved != size {
        return Err(format!("quinn: moved {moved} of {size}").into());
    }
    Ok(bulk_report(system, dir.workload(), size, elapsed))
}
