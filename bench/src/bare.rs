//! Bare channels (no qtalk call around them): the raw TCP protocol of [`crate::raw`] spoken on
//! channels of a qtalk-mux session, over qmux on TCP (`qmux`) or over QUIC (`mux-quic`), to
//! tell what the session layer costs from what the call layer adds.

use std::time::Instant;

use tokio::io::AsyncWriteExt;

use crate::stats::{bulk_report, Report};
use crate::Direction;

/// Accepts sessions and serves every channel on them as a raw connection.
pub async fn serve(listener: qtalk::mux::Listener) -> std::io::Result<()> {
    loop {
        let session = listener.accept().await?;
        tokio::spawn(async move {
            while let Some(ch) = session.accept().await {
                tokio::spawn(async move {
                    let _ = crate::raw::serve_conn(ch).await;
                });
            }
        });
    }
}

/// `size` bytes over one bare channel of a qmux session on TCP to `addr`.
pub async fn bulk(
    system: &str,
    addr: &str,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let session = qtalk::mux::transport::connect_tcp(addr, qtalk::mux::Config::default()).await?;
    bulk_on(system, session, dir, size).await
}

/// `size` bytes over one bare channel of `session` (qmux or QUIC).
pub async fn bulk_on(
    system: &str,
    session: qtalk::mux::Session,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut ch = session.open().await?;
    ch.write_all(match dir {
        Direction::Up => b"u",
        Direction::Down => b"d",
    })
    .await?;
    let moved = crate::raw::transfer(ch, dir, size).await?;
    let elapsed = start.elapsed();
    session.close();
    if moved != size {
        return Err(format!("{system}: moved {moved} of {size}").into());
    }
    Ok(bulk_report(system, dir.workload(), size, elapsed))
}
