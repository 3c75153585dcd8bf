//! QUIC rows: ours over QUIC (`ours-quic`, qtalk CBOR with QUIC as the base layer), a bare
//! channel of our QUIC session (`mux-quic`, served by [`crate::bare`]) and bare quinn
//! (`quinn`). The last two speak the raw TCP protocol of [`crate::raw`]: for calls, one new
//! channel or stream per 9-byte round trip, as a qtalk call over QUIC takes. All on UDP
//! loopback with a fresh self-signed certificate.

use std::net::SocketAddr;
use std::time::Instant;

use qtalk::mux::quic::quinn;
use qtalk::mux::{tls, Config};

use crate::stats::{bulk_report, calls_report, drive, Report};
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

async fn connect_bare(
    addr: &str,
) -> Result<(quinn::Endpoint, quinn::Connection), Box<dyn std::error::Error>> {
    let remote: SocketAddr = addr.parse()?;
    let endpoint = quinn::Endpoint::client((std::net::Ipv4Addr::UNSPECIFIED, 0).into())?;
    let client =
        qtalk::mux::quic::client_config(tls::insecure_client_config(), &Config::default())?;
    let conn = endpoint.connect_with(client, remote, "localhost")?.await?;
    Ok((endpoint, conn))
}

/// Round trips of a 9-byte message, each on a new bidirectional stream (opening a QUIC stream
/// takes no round trip): the least a call over QUIC can cost with quinn.
pub async fn calls_bare(
    system: &str,
    addr: &str,
    callers: usize,
    secs: std::time::Duration,
    warmup: std::time::Duration,
) -> Result<Report, Box<dyn std::error::Error>> {
    let (endpoint, conn) = connect_bare(addr).await?;
    let op = {
        let conn = conn.clone();
        move |_| {
            let conn = conn.clone();
            async move {
                let Ok((send, recv)) = conn.open_bi().await else {
                    return false;
                };
                let mut stream = tokio::io::join(recv, send);
                let ok = crate::raw::echo_once(&mut stream).await;
                let _ = stream.into_inner().1.finish();
                ok
            }
        }
    };
    drive(callers, warmup, op.clone()).await;
    let (elapsed, lat) = drive(callers, secs, op).await;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(calls_report(system, "calls", callers, elapsed, lat))
}

/// `size` bytes over one bare quinn stream.
pub async fn bulk_bare(
    system: &str,
    addr: &str,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let (endpoint, conn) = connect_bare(addr).await?;
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

/// Round trips of a 9-byte message, each on a new channel of a qtalk-mux QUIC session.
pub async fn calls_mux(
    system: &str,
    addr: &str,
    callers: usize,
    secs: std::time::Duration,
    warmup: std::time::Duration,
) -> Result<Report, Box<dyn std::error::Error>> {
    let session = connect_session(addr).await?;
    let op = {
        let session = session.clone();
        move |_| {
            let session = session.clone();
            async move {
                let Ok(mut ch) = session.open().await else {
                    return false;
                };
                crate::raw::echo_once(&mut ch).await
            }
        }
    };
    drive(callers, warmup, op.clone()).await;
    let (elapsed, lat) = drive(callers, secs, op).await;
    session.close();
    Ok(calls_report(system, "calls", callers, elapsed, lat))
}
