//! Bulk throughput over TCP loopback: raw TCP, then qmux with 1 and 16 channels, in one run,
//! with the ratio to raw TCP. When the Go reference peer is available (`QTALK_GO_PEER` names the
//! built `interop/go` binary), its own in-process measurement runs too.
//!
//! `cargo bench -p qmux --features quic --bench throughput` (without `--features quic` the
//! QUIC rows are left out; `QMUX_BENCH_MB` sets the size, default 1024 MiB;
//! `QMUX_BENCH_RUNS` the runs per row, default 3; `QMUX_BENCH_SWEEP=256,1024,4096` also tries
//! those windows in KiB with several max packet sizes).

use std::time::Instant;

use qtalk_mux::{Config, Listener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WRITE_SIZE: usize = 256 * 1024;

async fn push<W: AsyncWrite + Unpin>(w: &mut W, total: usize) {
    let block = vec![0xA5u8; WRITE_SIZE];
    let mut left = total;
    while left > 0 {
        let n = left.min(block.len());
        w.write_all(&block[..n]).await.unwrap();
        left -= n;
    }
    w.shutdown().await.unwrap();
}

async fn drain<R: AsyncRead + Unpin>(r: &mut R) -> usize {
    let mut buf = vec![0u8; WRITE_SIZE];
    let mut n = 0;
    loop {
        match r.read(&mut buf).await.unwrap() {
            0 => return n,
            k => n += k,
        }
    }
}

async fn raw_tcp(total: usize, conns: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let per = total / conns;
    let start = Instant::now();
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move { drain(&mut s).await }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        n
    });
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            push(&mut s, per).await;
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let n = server.await.unwrap();
    assert_eq!(n, per * conns);
    n as f64 / start.elapsed().as_secs_f64() / 1e6
}

async fn qmux_tcp(total: usize, channels: usize, config: Config) -> f64 {
    let listener = Listener::bind_tcp("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::transport::connect_tcp(addr, config),
        listener.accept()
    );
    bulk(client.unwrap(), server.unwrap(), total, channels).await
}

/// The same transfer with QUIC as the base layer (one stream per channel), on UDP loopback.
#[cfg(feature = "quic")]
async fn quic(total: usize, channels: usize) -> f64 {
    let id = qtalk_mux::tls::self_signed(&["localhost"]).unwrap();
    let server_tls = qtalk_mux::tls::server_config(id.certs.clone(), id.key).unwrap();
    let listener = Listener::bind_quic("127.0.0.1:0", server_tls, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let client_tls = qtalk_mux::tls::client_config(id.certs).unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::quic::connect(addr, "localhost", client_tls, Config::default()),
        listener.accept()
    );
    bulk(client.unwrap(), server.unwrap(), total, channels).await
}

/// Sends `total` bytes from `client` to `server` over `channels` channels at once; MB/s.
async fn bulk(
    client: qtalk_mux::Session,
    server: qtalk_mux::Session,
    total: usize,
    channels: usize,
) -> f64 {
    let per = total / channels;
    let start = Instant::now();
    let sink = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..channels {
            let mut ch = server.accept().await.unwrap();
            tasks.push(tokio::spawn(async move { drain(&mut ch).await }));
        }
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        n
    });
    let mut sources = Vec::new();
    for _ in 0..channels {
        let client = client.clone();
        sources.push(tokio::spawn(async move {
            let mut ch = client.open().await.unwrap();
            push(&mut ch, per).await;
        }));
    }
    for s in sources {
        s.await.unwrap();
    }
    let n = sink.await.unwrap();
    assert_eq!(n, per * channels);
    let rate = n as f64 / start.elapsed().as_secs_f64() / 1e6;
    client.close();
    rate
}

fn go_reference(total: usize) -> Option<String> {
    let peer = std::env::var("QTALK_GO_PEER").ok()?;
    let out = std::process::Command::new(peer)
        .args(["-mode", "selfbench", "-size", &total.to_string()])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Median of `runs` measurements.
async fn median<F, Fut>(runs: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        v.push(f().await);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mb: usize = std::env::var("QMUX_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let runs: usize = std::env::var("QMUX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let total = mb << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Warm up.
        raw_tcp(total / 8, 1).await;
        qmux_tcp(total / 8, 1, Config::default()).await;

        let raw1 = median(runs, || raw_tcp(total, 1)).await;
        let raw16 = median(runs, || raw_tcp(total, 16)).await;
        let mux1 = median(runs, || qmux_tcp(total, 1, Config::default())).await;
        let mux16 = median(runs, || qmux_tcp(total, 16, Config::default())).await;
        println!("throughput over TCP loopback, {mb} MiB per run, median of {runs} runs, MB/s");
        println!(
            "{:<28} {:>8}",
            "raw TCP, 1 connection",
            format!("{raw1:.0}")
        );
        println!(
            "{:<28} {:>8}",
            "raw TCP, 16 connections",
            format!("{raw16:.0}")
        );
        println!(
            "{:<28} {:>8}  ({:.0}% of raw TCP, 1 connection)",
            "qmux, 1 channel",
            format!("{mux1:.0}"),
            100.0 * mux1 / raw1
        );
        println!(
            "{:<28} {:>8}  ({:.0}% of raw TCP, 16 connections)",
            "qmux, 16 channels",
            format!("{mux16:.0}"),
            100.0 * mux16 / raw16
        );
        #[cfg(feature = "quic")]
        {
            let quic1 = median(runs, || quic(total, 1)).await;
            let quic16 = median(runs, || quic(total, 16)).await;
            println!(
                "{:<28} {:>8}  ({:.0}% of raw TCP, 1 connection)",
                "QUIC, 1 stream (UDP)",
                format!("{quic1:.0}"),
                100.0 * quic1 / raw1
            );
            println!(
                "{:<28} {:>8}  ({:.0}% of raw TCP, 16 connections)",
                "QUIC, 16 streams (UDP)",
                format!("{quic16:.0}"),
                100.0 * quic16 / raw16
            );
        }
        if let Ok(sweep) = std::env::var("QMUX_BENCH_SWEEP") {
            for w in sweep.split(',').filter_map(|w| w.parse::<u32>().ok()) {
                for mp in [32u32 << 10, 256 << 10, 1 << 20] {
                    let cfg = Config::builder()
                        .window(w << 10)
                        .max_packet(mp)
                        .build()
                        .expect("valid config");
                    let r = median(runs, || qmux_tcp(total, 1, cfg.clone())).await;
                    let r16 = median(runs, || qmux_tcp(total, 16, cfg.clone())).await;
                    println!(
                        "window {w} KiB, max packet {} KiB: 1ch {r:.0} MB/s, 16ch {r16:.0} MB/s",
                        mp >> 10
                    );
                }
            }
        }
    });
    if let Some(go) = go_reference(total) {
        println!("Go reference (qtalk-go mux, its own in-process run; MB/s in the last column):");
        print!("{go}");
    }
}
