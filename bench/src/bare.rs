//! Bulk bytes over a bare qmux channel (no qtalk call around it): the raw TCP protocol of
//! [`crate::raw`] spoken on one channel of a qmux session, to tell what the session layer costs
//! from what the call layer adds.

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

pub async fn bulk(
    system: &str,
    addr: &str,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let session = qtalk::mux::transport::connect_tcp(addr, qtalk::mux::Config::default()).await?;
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
        return Err(format!("qmux: moved {moved} of {size}").into());
    }
    Ok(bulk_report(system, dir.workload(), size, elapsed))
}
