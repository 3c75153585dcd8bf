//! A hostile peer of the interop service (`qtalk interop --listen tcp://...`), to measure what
//! it can make a server hold.
//!
//! Opens SESSIONS sessions to ADDR and, on each, CHANNELS channels at once, each a `Bytes(null)`
//! call. The server answers `Bytes` by calling `Bytes` back on the same session; this peer
//! never confirms those OPENs (accept backlog 0, accept timeout beyond the attack), so the
//! server's handlers wait and never read their call channels. Meanwhile every call channel is
//! written to in 64 KiB chunks as far as the server's window lets. Writing stops once nothing
//! was written for a second (or after `--fill` seconds), the channels are held for `--hold`
//! seconds, then everything is closed.
//!
//! Prints, per session, what happened to its channels and the bytes written, grouped by
//! channel ("7 × 4194304" is 7 channels with 4 MiB each), then a total line: the bytes written
//! are the bytes the server holds unread for this peer.
//!
//! ```text
//! cargo run --release -p qtalk-cli --example busy_channels -- 127.0.0.1:9000 1 150 --hold 10
//! ```
//!
//! The codec follows `QTALK_CODEC` as for `qtalk interop` (CBOR unless `json`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qtalk::rpc::{Caller, Options};
use qtalk::Value;
use tokio::io::AsyncWriteExt;

/// Size of each write into a call channel.
const CHUNK: usize = 64 * 1024;
/// Writing is over once no channel made progress for this long.
const QUIET: Duration = Duration::from_secs(1);
/// How long closing the sessions may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What became of a channel (kept in [`Slot::state`]).
const OPENING: u8 = 0;
const WRITING: u8 = 1;
const FAILED: u8 = 2;
const CLOSED_BY_SERVER: u8 = 3;

struct Args {
    addr: String,
    sessions: usize,
    channels: usize,
    hold: Duration,
    fill: Duration,
}

fn usage() -> String {
    "usage: busy_channels ADDR SESSIONS CHANNELS [--hold SECS (10)] [--fill SECS (10)]".into()
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut hold = Duration::from_secs(10);
    let mut fill = Duration::from_secs(10);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--hold" | "--fill" => {
                let v = it.next().ok_or_else(usage)?;
                let d = qtalk_cli::parse_duration(&v)?;
                if a == "--hold" {
                    hold = d;
                } else {
                    fill = d;
                }
            }
            "-h" | "--help" => return Err(usage()),
            _ => positional.push(a),
        }
    }
    let [addr, sessions, channels] = <[String; 3]>::try_from(positional).map_err(|_| usage())?;
    let count = |s: &str| {
        s.parse::<usize>()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| format!("{s:?} is not a count (1 ..= 100000)"))
    };
    Ok(Args {
        addr,
        sessions: count(&sessions)?,
        channels: count(&channels)?,
        hold,
        fill,
    })
}

/// One channel's progress, shared between its task and the report.
#[derive(Default)]
struct Slot {
    state: AtomicU8,
    written: AtomicU64,
}

/// One attacking session.
struct Attack {
    caller: Caller,
    slots: Arc<Vec<Slot>>,
    /// The first error seen on this session's channels.
    first_error: Arc<Mutex<Option<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The session settings of the attacker: never confirm (nor refuse) the server's OPENs while
/// the attack lasts, and never hold back our own opens.
fn attacker_config(channels: usize, lasts: Duration) -> qtalk_mux::Config {
    qtalk_mux::Config::builder()
        .accept_backlog(0)
        .accept_timeout(lasts + Duration::from_secs(60))
        .open_timeout(lasts + Duration::from_secs(60))
        .max_channels(channels + 16)
        .window(64 * 1024)
        .memory_budget(usize::MAX / 4)
        .build()
        .expect("valid config")
}

/// Calls `Bytes(null)` on a new channel and writes into it until the window is spent (the
/// task is aborted when the attack ends, which closes the channel).
async fn busy_channel(
    caller: Caller,
    slot: usize,
    slots: Arc<Vec<Slot>>,
    first_error: Arc<Mutex<Option<String>>>,
    progress: Arc<AtomicU64>,
) {
    let s = &slots[slot];
    let fail = |state: u8, e: String| {
        s.state.store(state, Ordering::Relaxed);
        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(e);
    };
    let mut request = match caller.request("Bytes").await {
        Ok(r) => r,
        Err(e) => return fail(FAILED, format!("opening the call: {e}")),
    };
    if let Err(e) = request.send(&Value::Null).await {
        return fail(FAILED, format!("sending the arguments: {e}"));
    }
    s.state.store(WRITING, Ordering::Relaxed);
    let mut ch = request.into_response_stream();
    let chunk = vec![0x55u8; CHUNK];
    loop {
        match ch.write(&chunk).await {
            Ok(0) => return fail(CLOSED_BY_SERVER, "write returned 0".into()),
            Ok(n) => {
                s.written.fetch_add(n as u64, Ordering::Relaxed);
                progress.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => return fail(CLOSED_BY_SERVER, format!("writing: {e}")),
        }
    }
}

/// "7 × 4194304, 143 × 0": how many channels wrote how many bytes, largest first.
fn grouped(slots: &[Slot]) -> String {
    let mut groups: BTreeMap<u64, usize> = BTreeMap::new();
    for s in slots {
        *groups.entry(s.written.load(Ordering::Relaxed)).or_default() += 1;
    }
    groups
        .iter()
        .rev()
        .map(|(bytes, n)| format!("{n} × {bytes}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let codec = match qtalk_cli::peer::codec_from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let config = attacker_config(args.channels, args.fill + args.hold);
    let progress = Arc::new(AtomicU64::new(0));
    let start = Instant::now();

    let mut attacks = Vec::with_capacity(args.sessions);
    for _ in 0..args.sessions {
        let session =
            match qtalk_mux::transport::connect_tcp(args.addr.as_str(), config.clone()).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("busy_channels: cannot connect to {}: {e}", args.addr);
                    return ExitCode::from(3);
                }
            };
        let caller = Caller::with_options(session, codec.clone(), Options::default());
        let slots: Arc<Vec<Slot>> = Arc::new((0..args.channels).map(|_| Slot::default()).collect());
        let first_error = Arc::new(Mutex::new(None));
        let tasks = (0..args.channels)
            .map(|i| {
                tokio::spawn(busy_channel(
                    caller.clone(),
                    i,
                    slots.clone(),
                    first_error.clone(),
                    progress.clone(),
                ))
            })
            .collect();
        attacks.push(Attack {
            caller,
            slots,
            first_error,
            tasks,
        });
    }

    // Fill: until nothing was written for QUIET, or --fill passed.
    let mut last = (0u64, Instant::now());
    while start.elapsed() < args.fill {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = progress.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() >= QUIET {
            break;
        }
    }
    let filled = progress.load(Ordering::Relaxed);
    let fill_time = start.elapsed();
    eprintln!(
        "busy_channels: {filled} bytes written in {:.1}s; holding for {:.1}s",
        fill_time.as_secs_f64(),
        args.hold.as_secs_f64()
    );
    tokio::time::sleep(args.hold).await;

    // Leave: abort the writers (dropping their channels closes them), then the sessions.
    for a in &mut attacks {
        for t in &a.tasks {
            t.abort();
        }
        for t in a.tasks.drain(..) {
            let _ = t.await;
        }
        a.caller.session().close();
    }
    for a in &attacks {
        let _ = tokio::time::timeout(CLOSE_GRACE, a.caller.session().wait()).await;
    }

    let mut total = 0u64;
    let mut confirmed = 0usize;
    for (i, a) in attacks.iter().enumerate() {
        let count = |state: u8| {
            a.slots
                .iter()
                .filter(|s| s.state.load(Ordering::Relaxed) == state)
                .count()
        };
        let written: u64 = a
            .slots
            .iter()
            .map(|s| s.written.load(Ordering::Relaxed))
            .sum();
        let (writing, closed) = (count(WRITING), count(CLOSED_BY_SERVER));
        total += written;
        confirmed += writing + closed;
        let error = a
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default();
        println!(
            "session {i}: {} channels: {writing} confirmed, {} never confirmed, {} failed, \
             {closed} closed by the server; {written} bytes ({:.1} MiB); per channel: {}{error}",
            args.channels,
            count(OPENING),
            count(FAILED),
            mib(written),
            grouped(&a.slots),
        );
    }
    println!(
        "busy_channels: sessions={} channels={} confirmed={confirmed} written={total} \
         ({:.1} MiB) filled={filled} in {:.1}s held={:.1}s",
        args.sessions,
        args.channels,
        mib(total),
        fill_time.as_secs_f64(),
        args.hold.as_secs_f64(),
    );
    ExitCode::SUCCESS
}
