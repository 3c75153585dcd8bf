//! A well-behaved client of the interop service (`qtalk interop --listen tcp://...`), to see
//! whether it keeps being answered while other sessions misbehave.
//!
//! Connects one session, serves the callbacks on it (as `qtalk check` does: the server's
//! `Unary` calls `Unary` back on its caller) and calls `Unary(n)` one call at a time, every
//! `--interval` milliseconds (default 10), each with a deadline of `--timeout` milliseconds
//! (default 1000), until `--secs` seconds passed (default 10) or SIGINT/SIGTERM. `--selector
//! Error` calls `Error("ping")` instead, which the server answers without calling back.
//! A lost session is reconnected.
//!
//! Prints one line: calls made, failures (errors, wrong replies, deadlines), and the latency
//! of the successful calls (p50, p99, max):
//!
//! ```text
//! cargo run --release -p qtalk-cli --example bystander -- 127.0.0.1:9000 --secs 20
//! bystander: calls=1843 failures=0 p50_ms=0.21 p99_ms=0.54 max_ms=3.10
//! ```
//!
//! The codec follows `QTALK_CODEC` as for `qtalk interop` (CBOR unless `json`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qtalk::codec::Codec;
use qtalk::rpc::{Error, Peer};
use qtalk::Value;

struct Args {
    addr: String,
    secs: Duration,
    interval: Duration,
    timeout: Duration,
    selector: String,
}

fn usage() -> String {
    "usage: bystander ADDR [--secs SECS (10)] [--interval MS (10)] [--timeout MS (1000)] \
     [--selector Unary|Error]"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: String::new(),
        secs: Duration::from_secs(10),
        interval: Duration::from_millis(10),
        timeout: Duration::from_millis(1000),
        selector: "Unary".into(),
    };
    let mut addr = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(usage);
        let millis = |v: String| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{v:?} is not a number of milliseconds"))
        };
        match a.as_str() {
            "--secs" => args.secs = qtalk_cli::parse_duration(&value()?)?,
            "--interval" => args.interval = millis(value()?)?,
            "--timeout" => args.timeout = millis(value()?)?,
            "--selector" => {
                args.selector = value()?;
                if !matches!(args.selector.as_str(), "Unary" | "Error") {
                    return Err(usage());
                }
            }
            "-h" | "--help" => return Err(usage()),
            _ if addr.is_none() => addr = Some(a),
            _ => return Err(usage()),
        }
    }
    args.addr = addr.ok_or_else(usage)?;
    Ok(args)
}

/// One call; `Err` says why it counts as a failure.
async fn one_call(peer: &Peer, args: &Args, n: u64) -> Result<(), String> {
    let caller = peer.caller();
    if args.selector == "Error" {
        return match caller
            .call_timeout::<_, Value>(args.timeout, "Error", "ping")
            .await
        {
            Err(Error::Remote(m)) if m == "ping" => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(v) => Err(format!("Error answered {v:?}")),
        };
    }
    match caller
        .call_timeout::<_, u64>(args.timeout, "Unary", &n)
        .await
    {
        Ok(v) if v == n => Ok(()),
        Ok(v) => Err(format!("Unary({n}) answered {v}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn connect(args: &Args, codec: &Arc<dyn Codec>) -> Result<Peer, String> {
    let connecting =
        qtalk_mux::transport::connect_tcp(args.addr.as_str(), qtalk_mux::Config::default());
    match tokio::time::timeout(args.timeout, connecting).await {
        Ok(Ok(session)) => Ok(qtalk_cli::interop::serve_callbacks(session, codec.clone())),
        Ok(Err(e)) => Err(format!("connecting: {e}")),
        Err(_) => Err("connecting: timed out".into()),
    }
}

/// Completes on SIGINT or SIGTERM (never, if they cannot be watched).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// The nearest-rank `p`th percentile of sorted `v`, in milliseconds.
fn percentile_ms(v: &[Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1].as_secs_f64() * 1e3
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
    let end = Instant::now() + args.secs;
    let stop = stop_signal();
    tokio::pin!(stop);

    let mut latencies = Vec::new();
    let mut failures = 0u64;
    let mut first_failure: Option<String> = None;
    let mut peer: Option<Peer> = None;
    let mut n = 0u64;
    let work = async {
        while Instant::now() < end {
            n += 1;
            let began = Instant::now();
            let result = match &peer {
                Some(p) if !p.session().is_closed() => one_call(p, &args, n).await,
                _ => match connect(&args, &codec).await {
                    Ok(p) => {
                        let r = one_call(&p, &args, n).await;
                        peer = Some(p);
                        r
                    }
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) => latencies.push(began.elapsed()),
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(e);
                }
            }
            tokio::time::sleep(args.interval).await;
        }
    };
    tokio::select! {
        _ = work => {}
        _ = &mut stop => {}
    }
    if let Some(p) = &peer {
        p.close();
    }

    latencies.sort_unstable();
    let calls = latencies.len() as u64 + failures;
    println!(
        "bystander: calls={calls} failures={failures} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}{}",
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        first_failure
            .map(|e| format!(" first_failure={e:?}"))
            .unwrap_or_default(),
    );
    ExitCode::SUCCESS
}
