//! Throughput and latency against an interop peer.
//!
//! Three measurements, each running for [`Options::duration`]:
//!
//! 1. **Bytes**: one `Bytes` call continued into a raw stream; random data is written as fast
//!    as the peer takes it while the echo is read back. Reported: MiB/s sent and MiB/s
//!    received. The interop peer relays through a callback to this side, so the payload
//!    crosses the transport twice in each direction.
//! 2. **Unary, 1 caller**: sequential `Unary(i)` calls; calls/s and p50/p99 latency. Each call
//!    includes the peer's `Unary` callback to this side (two round trips).
//! 3. **Unary, N callers**: the same with [`Options::concurrency`] callers at once.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use qtalk::rpc::Caller;
use qtalk::Value;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{human_duration, Failure};

const MIB: f64 = 1024.0 * 1024.0;
const CHUNK: usize = 256 * 1024;

/// The warning `qtalk bench` prints when this program was built without optimizations, whose
/// numbers say little about the protocol; `None` in an optimized build.
pub fn debug_build_warning() -> Option<&'static str> {
    cfg!(debug_assertions).then_some(
        "warning: this qtalk is a debug build, whose numbers are 5-30x slower than an optimized \
         one's; for real numbers use `cargo run --release -p qtalk-cli -- bench`",
    )
}

/// How the benchmark runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long each of the three measurements runs (default 2 s).
    pub duration: Duration,
    /// Callers of the concurrent unary measurement (default 64).
    pub concurrency: usize,
    /// Deadline for any single call (default 10 s).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(2),
            concurrency: 64,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The bulk byte-stream measurement.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BytesResult {
    /// Bytes written into the stream.
    pub bytes_sent: u64,
    /// Bytes read back.
    pub bytes_received: u64,
    /// Sending rate in MiB/s (bytes sent over the time spent sending).
    pub send_mib_per_s: f64,
    /// Receiving rate in MiB/s (bytes received over the time until the echo ended).
    pub receive_mib_per_s: f64,
}

/// A unary-call measurement.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UnaryResult {
    /// Callers running at once.
    pub callers: usize,
    /// Calls completed.
    pub calls: u64,
    /// Calls per second.
    pub calls_per_s: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
}

/// All results, as printed by `qtalk bench --json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    /// The codec used (`json` or `cbor`).
    pub codec: String,
    /// The peer benchmarked.
    pub peer: String,
    /// Seconds each measurement ran.
    pub duration_s: f64,
    /// The bulk byte-stream measurement.
    pub bytes: BytesResult,
    /// Sequential unary calls.
    pub unary_sequential: UnaryResult,
    /// Concurrent unary calls.
    pub unary_concurrent: UnaryResult,
}

impl Report {
    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let us = |v: f64| human_duration(Duration::from_nanos((v * 1e3) as u64));
        let mut s = String::new();
        s.push_str(&format!(
            "qtalk bench: {} codec, peer {}, {} per test\n\n",
            self.codec,
            self.peer,
            human_duration(Duration::from_secs_f64(self.duration_s))
        ));
        s.push_str(&format!(
            "{:<28} {:>16} {:>10} {:>10}\n",
            "test", "result", "p50", "p99"
        ));
        s.push_str(&format!(
            "{:<28} {:>11.1} MiB/s\n",
            "Bytes stream, sending", self.bytes.send_mib_per_s
        ));
        s.push_str(&format!(
            "{:<28} {:>11.1} MiB/s\n",
            "Bytes stream, receiving", self.bytes.receive_mib_per_s
        ));
        for u in [&self.unary_sequential, &self.unary_concurrent] {
            let name = if u.callers == 1 {
                "Unary, 1 caller".to_string()
            } else {
                format!("Unary, {} callers", u.callers)
            };
            s.push_str(&format!(
                "{:<28} {:>10.0} calls/s {:>10} {:>10}\n",
                name,
                u.calls_per_s,
                us(u.p50_us),
                us(u.p99_us)
            ));
        }
        s.push_str(
            "\nBytes are echoed through the peer's callback to this side (each byte crosses the\n\
             transport twice each way); each Unary call includes the peer's Unary callback.\n",
        );
        s
    }
}

/// Progress reporting on stderr: a line rewritten in place on a terminal, one line per
/// measurement otherwise.
struct Progress {
    tty: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn start(&self, what: &str, duration: Duration) {
        if !self.tty {
            eprintln!("bench: {what} for {}...", human_duration(duration));
        }
    }

    fn update(&self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[2Kbench: {line}");
        }
    }

    fn finish(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Runs the three measurements with `caller` (the peer's callbacks must be answered by
/// [`crate::interop::callbacks`] on the same session). `peer` only labels the report.
pub async fn run(caller: &Caller, options: &Options, peer: &str) -> Result<Report, Failure> {
    let progress = Progress::new();
    let bytes = bulk(caller, options, &progress).await;
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            progress.finish();
            return Err(e);
        }
    };
    let unary_results = async {
        let seq = unary(caller, options, 1, &progress).await?;
        let conc = unary(caller, options, options.concurrency.max(1), &progress).await?;
        Ok::<_, Failure>((seq, conc))
    }
    .await;
    progress.finish();
    let (unary_sequential, unary_concurrent) = unary_results?;
    Ok(Report {
        codec: caller.codec().name().to_string(),
        peer: peer.to_string(),
        duration_s: options.duration.as_secs_f64(),
        bytes,
        unary_sequential,
        unary_concurrent,
    })
}

fn failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Transport(format!("bench {what}: {e}"))
}

async fn bulk(
    caller: &Caller,
    options: &Options,
    progress: &Progress,
) -> Result<BytesResult, Failure> {
    progress.start("Bytes stream", options.duration);
    let mut resp = tokio::time::timeout(options.timeout, caller.call_raw("Bytes", &Value::Null))
        .await
        .map_err(|_| failure("Bytes", "no answer"))?
        .map_err(|e| failure("Bytes", e))?;
    let _: Value = resp.receive().await.map_err(|e| failure("Bytes", e))?;
    let (mut r, mut w) = tokio::io::split(resp);
    let mut data = vec![0u8; CHUNK];
    crate::check::random_bytes(&mut data);
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + options.duration;

    let sent_w = sent.clone();
    let writer = async move {
        while Instant::now() < deadline {
            w.write_all(&data).await?;
            sent_w.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>(start.elapsed())
    };
    let received_r = received.clone();
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            received_r.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok::<_, std::io::Error>(start.elapsed())
    };
    let ticker = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let t = start.elapsed().as_secs_f64().max(1e-9);
            progress.update(&format!(
                "Bytes stream {:.1}s: sending {:.1} MiB/s, receiving {:.1} MiB/s",
                t,
                sent.load(Ordering::Relaxed) as f64 / MIB / t,
                received.load(Ordering::Relaxed) as f64 / MIB / t
            ));
        }
    };
    let work = async { tokio::try_join!(writer, reader) };
    let limit = options.duration + options.timeout;
    let (send_time, recv_time) = tokio::select! {
        r = tokio::time::timeout(limit, work) => r
            .map_err(|_| failure("Bytes", "the echo did not finish in time"))?
            .map_err(|e| failure("Bytes", e))?,
        _ = ticker => unreachable!("the ticker never ends"),
    };
    let bytes_sent = sent.load(Ordering::Relaxed);
    let bytes_received = received.load(Ordering::Relaxed);
    if bytes_sent != bytes_received {
        return Err(Failure::Check(format!(
            "bench Bytes: sent {bytes_sent} bytes but {bytes_received} came back"
        )));
    }
    Ok(BytesResult {
        bytes_sent,
        bytes_received,
        send_mib_per_s: bytes_sent as f64 / MIB / send_time.as_secs_f64().max(1e-9),
        receive_mib_per_s: bytes_received as f64 / MIB / recv_time.as_secs_f64().max(1e-9),
    })
}

async fn unary(
    caller: &Caller,
    options: &Options,
    callers: usize,
    progress: &Progress,
) -> Result<UnaryResult, Failure> {
    let label = if callers == 1 {
        "Unary, 1 caller".to_string()
    } else {
        format!("Unary, {callers} callers")
    };
    progress.start(&label, options.duration);
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..callers {
        let caller = caller.clone();
        let count = count.clone();
        let timeout = options.timeout;
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut i = n as i64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ret: Value = caller
                    .call_timeout(timeout, "Unary", &Value::Int(i.into()))
                    .await
                    .map_err(|e| failure("Unary", e))?;
                latencies.push(t.elapsed());
                if ret.as_i64() != Some(i) {
                    return Err(Failure::Check(format!(
                        "bench Unary({i}) returned {}",
                        crate::gofmt::go_format(&ret)
                    )));
                }
                count.fetch_add(1, Ordering::Relaxed);
                i += callers as i64;
            }
            Ok(latencies)
        });
    }
    let mut all = Vec::new();
    let mut first_error = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.tick().await;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(l))) => all.extend(l),
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                    tasks.abort_all();
                }
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => {
                    first_error.get_or_insert(failure("Unary", e));
                    tasks.abort_all();
                }
            },
            _ = ticker.tick() => {
                let t = start.elapsed().as_secs_f64().max(1e-9);
                progress.update(&format!(
                    "{label} {t:.1}s: {:.0} calls/s",
                    count.load(Ordering::Relaxed) as f64 / t
                ));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |p: usize| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = (all.len() * p / 100).min(all.len() - 1);
        all[i].as_secs_f64() * 1e6
    };
    let calls = all.len() as u64;
    Ok(UnaryResult {
        callers,
        calls,
        calls_per_s: calls as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: pct(50),
        p99_us: pct(99),
    })
}
