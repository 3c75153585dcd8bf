//! `xbench`: benchmarks of qtalk across processes, beside tarpc and raw tokio TCP, and the
//! memory cost of idle sessions and channels. See `bench/README.md`.
//!
//! - `xbench run`: the driver. For every workload and every system it starts `xbench server`
//!   and `xbench client` as two child processes, reads the client's one-line JSON result, stops
//!   the server, and goes on with the next system; the systems are interleaved round by round.
//!   Prints markdown tables of medians and ratios.
//! - `xbench scale`: RSS per idle session and per idle channel of a server process (ours, and
//!   the Go reference's when `QTALK_GO_PEER` names a built `interop/go` peer).
//! - `xbench server`, `xbench client`, `xbench scale-server`, `xbench scale-client`: the
//!   processes the drivers start.

mod bare;
mod driver;
mod layers;
mod mixed;
mod ours;
mod quic_floor;
mod quinn_sys;
mod raw;
mod scale;
mod stats;
mod tarpc_sys;

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Write (and read) size of the bulk transfers.
pub const CHUNK: usize = 256 * 1024;

/// The tarpc version in Cargo.toml, for the report.
pub const TARPC_VERSION: &str = "0.38";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// qtalk, JSON codec, over qmux on TCP.
    OursJson,
    /// qtalk, CBOR codec, over qmux on TCP.
    OursCbor,
    /// tarpc, JSON serde transport on TCP.
    Tarpc,
    /// Plain tokio TCP.
    Raw,
    /// A bare qmux channel on TCP, no qtalk call (bulk only).
    Qmux,
    /// qtalk, CBOR codec, with QUIC as the base layer (UDP).
    OursQuic,
    /// Bare quinn, no qtalk: one stream (bulk), or a new stream per round trip (calls).
    Quinn,
    /// A bare qtalk-mux channel over QUIC, no qtalk call: one channel (bulk), or a new channel
    /// per round trip (calls).
    MuxQuic,
    /// quinn-proto driven in one task per process, the echo inside that task: the floor of
    /// any stack on quinn-proto (calls only).
    QuicFloor,
    /// `ours-cbor` with the authentication and metrics layers on the server, the token in
    /// every call's metadata (calls only).
    OursLayers,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::OursJson => "ours-json",
            System::OursCbor => "ours-cbor",
            System::Tarpc => "tarpc",
            System::Raw => "raw",
            System::Qmux => "qmux",
            System::OursQuic => "ours-quic",
            System::Quinn => "quinn",
            System::MuxQuic => "mux-quic",
            System::QuicFloor => "quic-floor",
            System::OursLayers => "ours-layers",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Unary echo calls of "hello" (raw: length-prefixed "hello" round trips).
    Calls,
    /// Opening (and dropping) a qmux channel, the first round trip of every call (ours only).
    Open,
    /// Bulk bytes from the client to the server.
    Up,
    /// Bulk bytes from the server to the client.
    Down,
    /// One caller's unary calls while a continued call streams bulk data from the client to
    /// the server (ours only; `--beside` says where the bulk goes).
    MixedUp,
    /// The same with the bulk from the server to the client.
    MixedDown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    pub fn arg(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
    pub fn workload(self) -> &'static str {
        self.arg()
    }
}

#[derive(Parser)]
#[command(name = "xbench", about = "qtalk vs tarpc vs raw TCP, across processes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one system on TCP; prints `listening ADDR` on stdout once ready.
    Server {
        #[arg(long, value_enum)]
        system: System,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
    },
    /// Run one workload against a server; prints one JSON line on stdout.
    Client {
        #[arg(long, value_enum)]
        system: System,
        #[arg(long)]
        addr: String,
        #[arg(long, value_enum, default_value = "calls")]
        workload: Workload,
        /// Concurrent callers on the one connection.
        #[arg(long, default_value_t = 1)]
        callers: usize,
        /// Seconds measured (calls).
        #[arg(long, default_value_t = 3.0)]
        secs: f64,
        /// Warm-up before measuring (calls), in milliseconds.
        #[arg(long, default_value_t = 300)]
        warmup_ms: u64,
        /// Bytes moved (up, down); suffixes K, M, G (powers of 1024).
        #[arg(long, default_value = "1G", value_parser = parse_size)]
        bytes: u64,
        /// Mixed loads: where the bulk data goes beside the calls.
        #[arg(long, value_enum, default_value = "same")]
        beside: mixed::Beside,
    },
    /// The driver: every system and workload in child processes, interleaved, medians.
    Run(driver::RunArgs),
    /// RSS per idle session and per idle channel.
    Scale(scale::ScaleArgs),
    /// Server of `scale`: keeps sessions (qtalk rpc Server) or channels (one qmux session).
    ScaleServer {
        #[arg(long, value_enum)]
        what: scale::What,
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// TCP accept backlog (0: `qtalk::mux::Listener::bind_tcp` as it is).
        #[arg(long, default_value_t = 0)]
        backlog: u32,
        /// Exit after this many seconds at the latest.
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
    /// Client of `scale`: opens `n` sessions or `n` channels on one session, then idles.
    ScaleClient {
        #[arg(long, value_enum)]
        what: scale::What,
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// Exit after this many seconds at the latest.
        #[arg(long, default_value_t = 600)]
        max_secs: u64,
    },
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let mult = match s[i..].trim().to_ascii_uppercase().as_str() {
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?}")),
            };
            (&s[..i], mult)
        }
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("bad size {s:?}: {e}"))
}

/// The multi-threaded runtime of every server and client process: as many workers as cores,
/// or `XBENCH_WORKERS` (which `xbench run --workers` sets for its children).
fn runtime() -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("XBENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        b.worker_threads(n);
    }
    b.enable_all().build().expect("tokio runtime")
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Server { system, addr } => runtime().block_on(server(system, &addr)),
        Command::Client {
            system,
            addr,
            workload,
            callers,
            secs,
            warmup_ms,
            bytes,
            beside,
        } => runtime().block_on(client(
            system,
            &addr,
            workload,
            callers.max(1),
            Duration::from_secs_f64(secs),
            Duration::from_millis(warmup_ms),
            bytes,
            beside,
        )),
        Command::Run(args) => driver::run(args),
        Command::Scale(args) => scale::run(args),
        Command::ScaleServer {
            what,
            addr,
            backlog,
            max_secs,
        } => runtime().block_on(scale::server(
            what,
            &addr,
            backlog,
            Duration::from_secs(max_secs),
        )),
        Command::ScaleClient {
            what,
            addr,
            n,
            max_secs,
        } => runtime().block_on(scale::client(what, &addr, n, Duration::from_secs(max_secs))),
    };
    std::process::exit(code);
}

fn announce(addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {addr}");
    let _ = out.flush();
}

async fn server(system: System, addr: &str) -> i32 {
    let result = match system {
        System::OursJson | System::OursCbor => {
            match qtalk::mux::Listener::bind_tcp(addr, qtalk::mux::Config::default()).await {
                Ok(l) => {
                    announce(l.local_addr().expect("local addr"));
                    let codec = if system == System::OursCbor {
                        "cbor"
                    } else {
                        "json"
                    };
                    ours::serve(l, codec).await
                }
                Err(e) => Err(e),
            }
        }
        System::Qmux => {
            match qtalk::mux::Listener::bind_tcp(addr, qtalk::mux::Config::default()).await {
                Ok(l) => {
                    announce(l.local_addr().expect("local addr"));
                    bare::serve(l).await
                }
                Err(e) => Err(e),
            }
        }
        System::OursLayers => {
            match qtalk::mux::Listener::bind_tcp(addr, qtalk::mux::Config::default()).await {
                Ok(l) => {
                    announce(l.local_addr().expect("local addr"));
                    layers::serve(l).await
                }
                Err(e) => Err(e),
            }
        }
        System::OursQuic => match quinn_sys::listen_ours(addr).await {
            Ok(l) => {
                announce(l.local_addr().expect("local addr"));
                ours::serve(l, "cbor").await
            }
            Err(e) => Err(e),
        },
        System::MuxQuic => match quinn_sys::listen_ours(addr).await {
            Ok(l) => {
                announce(l.local_addr().expect("local addr"));
                bare::serve(l).await
            }
            Err(e) => Err(e),
        },
        System::Quinn => match quinn_sys::listen_bare(addr) {
            Ok(e) => {
                announce(e.local_addr().expect("local addr"));
                quinn_sys::serve_bare(e).await
            }
            Err(e) => Err(e),
        },
        System::QuicFloor => match quic_floor::listen(addr).await {
            Ok(s) => {
                announce(s.local_addr().expect("local addr"));
                quic_floor::serve(s).await
            }
            Err(e) => Err(e),
        },
        System::Tarpc | System::Raw => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                announce(l.local_addr().expect("local addr"));
                if system == System::Tarpc {
                    tarpc_sys::serve(l).await
                } else {
                    raw::serve(l).await
                }
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("xbench server: {e}");
            1
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn client(
    system: System,
    addr: &str,
    workload: Workload,
    callers: usize,
    secs: Duration,
    warmup: Duration,
    bytes: u64,
    beside: mixed::Beside,
) -> i32 {
    let name = system.name();
    let codec = match system {
        System::OursCbor => "cbor",
        System::OursQuic => "cbor-quic",
        System::OursLayers => "cbor-layers",
        _ => "json",
    };
    let dir = match workload {
        Workload::Up | Workload::MixedUp => Some(Direction::Up),
        Workload::Down | Workload::MixedDown => Some(Direction::Down),
        Workload::Calls | Workload::Open => None,
    };
    if let (Workload::MixedUp | Workload::MixedDown, Some(d)) = (workload, dir) {
        let result = match system {
            System::OursJson | System::OursCbor | System::OursQuic => {
                mixed::run(name, addr, codec, d, beside, secs, warmup).await
            }
            _ => Err("mixed loads: ours only".into()),
        };
        return match result {
            Ok(report) => {
                println!("{}", serde_json::to_string(&report).expect("json"));
                0
            }
            Err(e) => {
                eprintln!("xbench client {name}: {e}");
                1
            }
        };
    }
    if workload == Workload::Open {
        let result = match system {
            System::OursJson | System::OursCbor => ours::open_only(name, addr, secs, warmup).await,
            _ => Err(std::io::Error::other("open: ours only")),
        };
        return match result {
            Ok(report) => {
                println!("{}", serde_json::to_string(&report).expect("json"));
                0
            }
            Err(e) => {
                eprintln!("xbench client {name}: {e}");
                1
            }
        };
    }
    let result: Result<stats::Report, Box<dyn std::error::Error>> = match (system, dir) {
        (System::OursJson | System::OursCbor | System::OursQuic | System::OursLayers, None) => {
            ours::calls(name, addr, codec, callers, secs, warmup)
                .await
                .map_err(Into::into)
        }
        (System::OursJson | System::OursCbor | System::OursQuic, Some(d)) => {
            ours::bulk(name, addr, codec, d, bytes).await
        }
        (System::Tarpc, None) => tarpc_sys::calls(name, addr, callers, secs, warmup)
            .await
            .map_err(Into::into),
        (System::Tarpc, Some(_)) => Err("tarpc has no byte streams: bulk is not measured".into()),
        (System::Raw, None) => raw::calls(name, addr, callers, secs, warmup)
            .await
            .map_err(Into::into),
        (System::Raw, Some(d)) => raw::bulk(name, addr, d, bytes).await,
        (System::Qmux, Some(d)) => bare::bulk(name, addr, d, bytes).await,
        (System::Qmux, None) => Err("qmux: bulk only".into()),
        (System::Quinn, Some(d)) => quinn_sys::bulk_bare(name, addr, d, bytes).await,
        (System::Quinn, None) => quinn_sys::calls_bare(name, addr, callers, secs, warmup).await,
        (System::MuxQuic, None) => quinn_sys::calls_mux(name, addr, callers, secs, warmup).await,
        (System::QuicFloor, None) => quic_floor::calls(name, addr, callers, secs, warmup).await,
        (System::QuicFloor, Some(_)) => Err("quic-floor: calls only".into()),
        (System::OursLayers, Some(_)) => Err("ours-layers: calls only".into()),
        (System::MuxQuic, Some(d)) => match quinn_sys::connect_session(addr).await {
            Ok(session) => bare::bulk_on(name, session, d, bytes).await,
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).expect("json"));
            0
        }
        Err(e) => {
            eprintln!("xbench client {name}: {e}");
            1
        }
    }
}
