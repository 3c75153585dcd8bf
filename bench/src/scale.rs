//! `xbench scale`: what an idle session, and an idle channel, costs a server in resident memory.
//!
//! Sessions: the server (ours: `qtalk::rpc::Server` serving an echo service; Go: the
//! reference's `rpc.Server`) accepts TCP sessions; a client process opens `n` of them and
//! leaves them idle. Channels: the server accepts one session and keeps every channel the
//! client opens on it (`n` of them, reading nothing). The driver reads the server's VmRSS from
//! /proc before the client connects and once the server has them all, and prints the
//! difference per session or channel.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::driver::{loadavg, self_command, Proc};
use crate::stats::median;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Sessions served by the RPC server.
    Sessions,
    /// Sessions kept by a bare qmux accept loop, no RPC server on them.
    BareSessions,
    /// Channels on one session.
    Channels,
}

impl What {
    fn name(self) -> &'static str {
        match self {
            What::Sessions => "sessions",
            What::BareSessions => "bare-sessions",
            What::Channels => "channels",
        }
    }
}

/// The per-session channel limit used on both sides for the channel measurement (qmux's
/// default is 1024).
const MAX_CHANNELS: usize = 20_000;

/// The session configuration of the channel measurement, on both sides.
fn channel_config() -> qtalk::mux::Config {
    qtalk::mux::Config::builder()
        .max_channels(MAX_CHANNELS)
        .build()
        .expect("a valid configuration")
}

#[derive(Args, Clone, Debug)]
pub struct ScaleArgs {
    /// Sessions, and channels on one session.
    #[arg(long, default_value_t = 10_000)]
    pub n: usize,
    /// Rounds; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// A built `interop/go` peer (with the `scale` mode) for the Go reference's figures
    /// (default: the environment's QTALK_GO_PEER).
    #[arg(long)]
    pub go_peer: Option<String>,
    /// Wait after the last session or channel arrived before reading RSS, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub settle_ms: u64,
    /// Our server's TCP accept backlog: 0 takes `qtalk::mux::Listener::bind_tcp` as it is (tokio's
    /// listener, backlog 128); N binds a tokio listener with backlog N and runs
    /// `qtalk::mux::transport::over_tcp` on its connections. The Go peer listens with the system's
    /// somaxconn.
    #[arg(long, default_value_t = 0)]
    pub backlog: u32,
}

/// The kernel's count of SYNs dropped because an accept queue was full (all listeners).
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let keys = lines.next()?;
    let values = lines.next()?;
    let i = keys
        .split_whitespace()
        .position(|k| k == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Where the scale server takes its sessions from: qmux's own listener, or a tokio listener
/// with an explicit accept backlog whose connections become sessions with `over_tcp`.
enum Source {
    Qmux(qtalk::mux::Listener),
    Tcp(tokio::net::TcpListener, qtalk::mux::Config),
}

impl Source {
    async fn bind(addr: &str, config: qtalk::mux::Config, backlog: u32) -> std::io::Result<Source> {
        if backlog == 0 {
            return Ok(Source::Qmux(
                qtalk::mux::Listener::bind_tcp(addr, config).await?,
            ));
        }
        let addr: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(Source::Tcp(socket.listen(backlog)?, config))
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            Source::Qmux(l) => l.local_addr(),
            Source::Tcp(l, _) => l.local_addr(),
        }
    }

    async fn accept(&self) -> std::io::Result<qtalk::mux::Session> {
        match self {
            Source::Qmux(l) => l.accept().await,
            Source::Tcp(l, config) => {
                let (stream, _) = l.accept().await?;
                Ok(qtalk::mux::transport::over_tcp(stream, config.clone()))
            }
        }
    }
}

pub async fn server(what: What, addr: &str, backlog: u32, max: Duration) -> i32 {
    let config = match what {
        What::Sessions | What::BareSessions => qtalk::mux::Config::default(),
        What::Channels => channel_config(),
    };
    let listener = match Source::bind(addr, config, backlog).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("scale-server: {e}");
            return 2;
        }
    };
    say(&format!(
        "listening {}",
        listener.local_addr().expect("addr")
    ));
    let work = async {
        match what {
            What::Sessions => {
                let server = qtalk::rpc::Server::new(crate::ours::service(), qtalk::codec::Json);
                let mut n = 0usize;
                // Time spent in `Server::respond` (on the accept loop), per 1000 sessions.
                let mut in_respond = Duration::ZERO;
                loop {
                    match listener.accept().await {
                        Ok(session) => {
                            let t = Instant::now();
                            server.respond(session);
                            in_respond += t.elapsed();
                        }
                        Err(e) => {
                            eprintln!("scale-server: accept: {e}");
                            return 1;
                        }
                    }
                    n += 1;
                    if n % 100 == 0 {
                        say(&format!("sessions {n}"));
                    }
                    if n % 1000 == 0 {
                        eprintln!(
                            "scale-server: sessions {}..{}: {:.1} ms in Server::respond",
                            n - 999,
                            n,
                            in_respond.as_secs_f64() * 1e3
                        );
                        in_respond = Duration::ZERO;
                    }
                }
            }
            What::BareSessions => {
                let mut sessions = Vec::new();
                loop {
                    match listener.accept().await {
                        Ok(session) => sessions.push(session),
                        Err(e) => {
                            eprintln!("scale-server: accept: {e}");
                            return 1;
                        }
                    }
                    if sessions.len() % 100 == 0 {
                        say(&format!("bare-sessions {}", sessions.len()));
                    }
                }
            }
            What::Channels => {
                let session = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("scale-server: accept: {e}");
                        return 1;
                    }
                };
                let mut channels = Vec::new();
                while let Some(ch) = session.accept().await {
                    channels.push(ch);
                    if channels.len() % 100 == 0 {
                        say(&format!("channels {}", channels.len()));
                    }
                }
                say("session-end");
                0
            }
        }
    };
    tokio::time::timeout(max, work).await.unwrap_or(0)
}

#[derive(Serialize, Deserialize, Default)]
struct ClientReport {
    opened: usize,
    open_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

pub async fn client(what: What, addr: &str, n: usize, max: Duration) -> i32 {
    let me = std::process::id();
    let rss_before_kib = rss_kib(me).unwrap_or(0);
    let start = Instant::now();
    let mut sessions = Vec::new();
    let mut channels = Vec::new();
    let opened = async {
        match what {
            What::Sessions | What::BareSessions => {
                for _ in 0..n {
                    sessions.push(
                        qtalk::mux::transport::connect_tcp(addr, qtalk::mux::Config::default())
                            .await?,
                    );
                }
            }
            What::Channels => {
                let config = channel_config();
                let session = qtalk::mux::transport::connect_tcp(addr, config).await?;
                for _ in 0..n {
                    channels.push(session.open().await.map_err(std::io::Error::other)?);
                }
                sessions.push(session);
            }
        }
        Ok::<_, std::io::Error>(())
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(120), opened)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("timed out opening")))
    {
        eprintln!("scale-client: {e}");
        return 1;
    }
    let open_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = ClientReport {
        opened: n,
        open_secs,
        rss_before_kib,
        rss_after_kib: rss_kib(me).unwrap_or(0),
    };
    say(&format!(
        "ready {}",
        serde_json::to_string(&report).expect("json")
    ));
    // Idle until the driver kills this process (or `max` passed).
    tokio::time::sleep(max).await;
    drop((channels, sessions));
    0
}

struct Sample {
    before: u64,
    after: u64,
    client_per: Option<f64>,
    open_secs: f64,
    /// SYNs the kernel dropped meanwhile for a full accept queue.
    syn_drops: Option<u64>,
}

fn one(impl_: &str, what: What, a: &ScaleArgs) -> Result<Sample, String> {
    let cmd = match impl_ {
        "go" => {
            let mut c = std::process::Command::new(a.go_peer.as_deref().expect("go peer"));
            c.args(["scale", "-what", what.name(), "-listen", "127.0.0.1:0"]);
            c
        }
        _ => {
            let mut c = self_command();
            c.args(["scale-server", "--what", what.name()]);
            c.args(["--backlog", &a.backlog.to_string()]);
            c
        }
    };
    let server = Proc::spawn(cmd).map_err(|e| format!("spawn server: {e}"))?;
    let Some(addr) = server.listening() else {
        server.kill();
        return Err("server did not print its address".into());
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(server.pid()).unwrap_or(0);
    let overflows_before = listen_overflows();
    let mut cmd = self_command();
    cmd.args([
        "scale-client",
        "--what",
        what.name(),
        "--addr",
        &addr,
        "--n",
        &a.n.to_string(),
    ]);
    let client = match Proc::spawn(cmd) {
        Ok(c) => c,
        Err(e) => {
            server.kill();
            return Err(format!("spawn client: {e}"));
        }
    };
    let prefix = format!("{} ", what.name());
    let reached = server.wait_line(Duration::from_secs(180), |l| {
        l.strip_prefix(&prefix)
            .and_then(|n| n.trim().parse::<usize>().ok())
            .is_some_and(|n| n >= a.n)
    });
    let ready = client.wait_line(Duration::from_secs(180), |l| l.starts_with("ready "));
    let result = match (reached, ready) {
        (Some(_), Some(line)) => {
            std::thread::sleep(Duration::from_millis(a.settle_ms));
            let after = rss_kib(server.pid()).unwrap_or(0);
            let c: ClientReport = serde_json::from_str(&line["ready ".len()..]).unwrap_or_default();
            Ok(Sample {
                syn_drops: listen_overflows()
                    .zip(overflows_before)
                    .map(|(a, b)| a.saturating_sub(b)),
                before,
                after,
                client_per: (c.rss_after_kib > 0)
                    .then(|| (c.rss_after_kib as f64 - c.rss_before_kib as f64) / a.n as f64),
                open_secs: c.open_secs,
            })
        }
        (None, _) => Err(format!("the server did not report {} {}", a.n, what.name())),
        (_, None) => Err("the client did not get ready".into()),
    };
    server.kill();
    client.kill();
    result
}

pub fn run(mut a: ScaleArgs) -> i32 {
    if a.go_peer.is_none() {
        a.go_peer = std::env::var("QTALK_GO_PEER")
            .ok()
            .filter(|p| !p.is_empty());
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "xbench: this is a debug build; measure with `cargo run --release -p qtalk-bench`"
        );
    }
    let mut impls = vec!["ours"];
    if a.go_peer.is_some() {
        impls.push("go");
    }
    let load_before = loadavg();
    let mut samples: Vec<((What, &str), Sample)> = Vec::new();
    let mut failures = 0;
    for round in 0..a.rounds.max(1) {
        for what in [What::Sessions, What::BareSessions, What::Channels] {
            for i in 0..impls.len() {
                let impl_ = impls[(i + round) % impls.len()];
                eprint!("round {} {} {} ... ", round + 1, what.name(), impl_);
                match one(impl_, what, &a) {
                    Ok(s) => {
                        eprintln!(
                            "server {} -> {} KiB, {:.2} KiB each (opened in {:.2} s, {:?} SYNs dropped)",
                            s.before,
                            s.after,
                            (s.after as f64 - s.before as f64) / a.n as f64,
                            s.open_secs,
                            s.syn_drops
                        );
                        samples.push(((what, impl_), s));
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("failed: {e}");
                    }
                }
            }
        }
    }
    let load_after = loadavg();
    println!("## xbench scale\n");
    println!(
        "Server VmRSS before the client connects and once it holds all {n} (after {settle} ms), \
         median of {rounds} runs, each with a fresh server and client process. \
         Load average before: {load_before}; after: {load_after}.\n",
        n = a.n,
        settle = a.settle_ms,
        rounds = a.rounds.max(1),
    );
    println!("| idle | server | RSS before KiB | RSS after KiB | **KiB each** | KiB each, our client side | KiB each of each run | target | opening all, s | SYNs dropped |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |");
    for what in [What::Sessions, What::BareSessions, What::Channels] {
        let (unit, target) = match what {
            What::Sessions => (
                format!("session (of {} TCP sessions, RPC server)", a.n),
                "≤ 20 KiB",
            ),
            What::BareSessions => (format!("bare qmux session (of {}, no RPC)", a.n), ""),
            What::Channels => (format!("channel (of {} on one session)", a.n), "≤ 2 KiB"),
        };
        for impl_ in ["ours", "go"] {
            let name = match impl_ {
                "ours" => "**qtalk (Rust)**",
                _ => "qtalk-go (reference)",
            };
            let runs: Vec<&Sample> = samples
                .iter()
                .filter(|((w, i), _)| *w == what && *i == impl_)
                .map(|(_, s)| s)
                .collect();
            if runs.is_empty() {
                let why = if impl_ == "go" && a.go_peer.is_none() {
                    "not measured (set QTALK_GO_PEER)"
                } else {
                    "failed"
                };
                println!("| {unit} | {name} | {why} | | | | | | | |");
                continue;
            }
            let per: Vec<f64> = runs
                .iter()
                .map(|s| (s.after as f64 - s.before as f64) / a.n as f64)
                .collect();
            let client: Vec<f64> = runs.iter().filter_map(|s| s.client_per).collect();
            println!(
                "| {unit} | {name} | {:.0} | {:.0} | **{:.2}** | {:.2} | {} | {} | {:.1} | {} |",
                median(runs.iter().map(|s| s.before as f64).collect()),
                median(runs.iter().map(|s| s.after as f64).collect()),
                median(per.clone()),
                median(client),
                per.iter()
                    .map(|p| format!("{p:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if impl_ == "ours" { target } else { "" },
                median(runs.iter().map(|s| s.open_secs).collect()),
                runs.iter()
                    .map(|s| s.syn_drops.map_or("?".into(), |d| d.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
    }
    println!();
    let go = if a.go_peer.is_some() {
        "QTALK_GO_PEER=/path/to/qtalk-go-peer "
    } else {
        ""
    };
    println!(
        "Reproduce: `{go}cargo run --release -p qtalk-bench -- scale --n {} --rounds {} --settle-ms {} --backlog {}`",
        a.n,
        a.rounds.max(1),
        a.settle_ms,
        a.backlog
    );
    if failures > 0 {
        println!("\n{failures} run(s) failed (see stderr).");
        1
    } else {
        0
    }
}
