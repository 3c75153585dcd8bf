//! Unary call rate and latency over TCP loopback: a raw tokio TCP ping-pong, then qtalk echo
//! calls with 1 caller and with 64 concurrent callers on one session (JSON and CBOR), in one
//! run, a bare qmux channel open (the first round trip of every call), and CBOR calls with QUIC
//! as the base layer (UDP loopback). When `QTALK_GO_PEER` names the built `interop/go` peer, the Go reference's own
//! measurement of the same workload runs too.
//!
//! `cargo bench -p qtalk --bench calls` (`QTALK_BENCH_SECS` sets seconds per workload, default 3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use qtalk::codec::{Cbor, Codec, Json};
use qtalk::rpc::{handler_fn, Call, Caller, RespondMux, Responder, Server};
use qtalk::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Stats {
    calls: usize,
    elapsed: Duration,
    lat_us: Vec<u32>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&mut self, p: f64) -> u32 {
        self.lat_us.sort_unstable();
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us.get(i).copied().unwrap_or(0)
    }
}

/// Runs `workers` loops of `op` for `secs`, timing every operation.
async fn drive<F, Fut>(workers: usize, secs: Duration, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let deadline = start + secs;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let t = Instant::now();
                op(w).await;
                lat.push(t.elapsed().as_micros() as u32);
            }
            lat
        }));
    }
    let mut lat_us = Vec::new();
    for t in tasks {
        lat_us.extend(t.await.unwrap());
    }
    Stats {
        calls: lat_us.len(),
        elapsed: start.elapsed(),
        lat_us,
    }
}

async fn raw_ping_pong(workers: usize, secs: Duration) -> Stats {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 32];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut conns = Vec::new();
    for _ in 0..workers {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        conns.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    let conns = Arc::new(conns);
    drive(workers, secs, move |w| {
        let conns = conns.clone();
        async move {
            let mut s = conns[w].lock().await;
            let mut buf = [7u8; 32];
            s.write_all(&buf).await.unwrap();
            s.read_exact(&mut buf).await.unwrap();
        }
    })
    .await
}

/// The base layer a call benchmark runs on.
#[derive(Clone, Copy)]
enum Base {
    /// qmux over TCP loopback.
    Tcp,
    /// qmux over TCP loopback, the caller without a spare channel (`Options::spare_channels(0)`).
    TcpNoSpare,
    /// QUIC on UDP loopback (one stream per call).
    Quic,
}

async fn qtalk_calls(codec: Arc<dyn Codec>, workers: usize, secs: Duration) -> Stats {
    qtalk_calls_on(Base::Tcp, codec, workers, secs).await
}

async fn qtalk_calls_on(
    base: Base,
    codec: Arc<dyn Codec>,
    workers: usize,
    secs: Duration,
) -> Stats {
    let mux = RespondMux::new();
    mux.handle(
        "echo",
        handler_fn(|r: Responder, mut call: Call| async move {
            let v: Value = call.receive().await.unwrap_or(Value::Null);
            let _ = r.ret(&v).await;
        }),
    )
    .unwrap();
    let server = Server::new(mux, codec.clone());
    let session = match base {
        Base::Tcp | Base::TcpNoSpare => {
            let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let s2 = server.clone();
            tokio::spawn(async move { s2.serve(listener).await });
            let session = qtalk::mux::transport::connect_tcp(addr, Default::default());
            session.await.unwrap()
        }
        Base::Quic => {
            let id = qtalk::mux::tls::self_signed(&["localhost"]).unwrap();
            let tls = qtalk::mux::tls::server_config(id.certs.clone(), id.key).unwrap();
            let listener = qtalk::mux::Listener::bind_quic("127.0.0.1:0", tls, Default::default())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let s2 = server.clone();
            tokio::spawn(async move { s2.serve(listener).await });
            let tls = qtalk::mux::tls::client_config(id.certs).unwrap();
            let session = qtalk::mux::quic::connect(addr, "localhost", tls, Default::default());
            session.await.unwrap()
        }
    };
    let options = match base {
        Base::TcpNoSpare => qtalk::rpc::Options::builder()
            .spare_channels(0)
            .build()
            .unwrap(),
        _ => Default::default(),
    };
    let caller = Caller::with_options(session, codec, options);
    let c2 = caller.clone();
    let stats = drive(workers, secs, move |_| {
        let caller = c2.clone();
        async move {
            let v: String = caller.call("echo", "hello").await.unwrap();
            debug_assert_eq!(v, "hello");
        }
    })
    .await;
    caller.session().close();
    server.shutdown(Duration::from_millis(100)).await;
    stats
}

/// Opening (and dropping) a qmux channel: the first of a call's two round trips, alone.
async fn open_only(secs: Duration) -> Stats {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let s = listener.accept().await.unwrap();
        while let Some(ch) = s.accept().await {
            drop(ch);
        }
    });
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default())
        .await
        .unwrap();
    drive(1, secs, move |_| {
        let session = session.clone();
        async move {
            let ch = session.open().await.unwrap();
            drop(ch);
        }
    })
    .await
}

fn go_reference(codec: &str, secs: Duration) -> Option<String> {
    let peer = std::env::var("QTALK_GO_PEER").ok()?;
    let out = std::process::Command::new(peer)
        .args([
            "-mode",
            "rpc-selfbench",
            "-codec",
            codec,
            "-duration",
            &format!("{}s", secs.as_secs()),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let secs = Duration::from_secs(
        std::env::var("QTALK_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    rt.block_on(async {
        // Warm up.
        qtalk_calls(Arc::new(Json), 8, Duration::from_millis(300)).await;
        let mut raw1 = raw_ping_pong(1, secs).await;
        let raw1_p50 = raw1.pct(0.5);
        rows.push(("tokio TCP ping-pong", 1, raw1));
        rows.push(("tokio TCP ping-pong", 64, raw_ping_pong(64, secs).await));
        for (name, codec) in [
            ("qtalk JSON", Arc::new(Json) as Arc<dyn Codec>),
            ("qtalk CBOR", Arc::new(Cbor) as Arc<dyn Codec>),
        ] {
            rows.push((name, 1, qtalk_calls(codec.clone(), 1, secs).await));
            rows.push((name, 64, qtalk_calls(codec, 64, secs).await));
        }
        rows.push(("qmux channel open", 1, open_only(secs).await));
        let cbor = Arc::new(Cbor) as Arc<dyn Codec>;
        rows.push((
            "qtalk CBOR, no spare channel",
            1,
            qtalk_calls_on(Base::TcpNoSpare, cbor.clone(), 1, secs).await,
        ));
        rows.push((
            "qtalk CBOR over QUIC",
            1,
            qtalk_calls_on(Base::Quic, cbor.clone(), 1, secs).await,
        ));
        rows.push((
            "qtalk CBOR over QUIC",
            64,
            qtalk_calls_on(Base::Quic, cbor, 64, secs).await,
        ));
        println!(
            "unary echo calls over TCP loopback, {}s per row",
            secs.as_secs()
        );
        println!(
            "{:<22} {:>7} {:>10} {:>9} {:>9} {:>12}",
            "workload", "callers", "calls/s", "p50 us", "p99 us", "p50 / ping"
        );
        for (name, workers, mut s) in rows {
            let (p50, p99) = (s.pct(0.5), s.pct(0.99));
            println!(
                "{:<22} {:>7} {:>10.0} {:>9} {:>9} {:>11.2}x",
                name,
                workers,
                s.rate(),
                p50,
                p99,
                p50 as f64 / raw1_p50.max(1) as f64
            );
        }
    });
    for codec in ["json", "cbor"] {
        if let Some(go) = go_reference(codec, secs) {
            print!("Go reference ({codec}): {go}");
        }
    }
}
