//! What a client measures and prints: one JSON line per run.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The result of one client run, printed by the client as one JSON line and read by the driver.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub system: String,
    pub workload: String,
    pub callers: usize,
    /// Seconds measured.
    pub secs: f64,
    /// Operations completed (calls, round trips); 0 for bulk transfers.
    pub ops: u64,
    pub ops_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Bytes moved (bulk transfers).
    pub bytes: u64,
    /// 10^6 bytes per second (bulk transfers).
    pub mb_per_s: f64,
}

/// Latencies in nanoseconds, sorted on demand.
pub struct Latencies(pub Vec<u64>);

impl Latencies {
    pub fn percentile_us(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i] as f64 / 1e3
    }
}

/// Runs `workers` concurrent loops of `op` until `secs` have passed, timing each operation
/// (an operation started before the deadline is finished and counted). `op` returns false to
/// stop its loop early (an error).
pub async fn drive<F, Fut>(workers: usize, secs: Duration, op: F) -> (Duration, Latencies)
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = bool> + Send,
{
    let start = Instant::now();
    let deadline = start + secs;
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let t = Instant::now();
                if !op(w).await {
                    break;
                }
                lat.push(t.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker panicked"));
    }
    (start.elapsed(), Latencies(all))
}

/// Builds the report of a call or round-trip workload.
pub fn calls_report(
    system: &str,
    workload: &str,
    callers: usize,
    elapsed: Duration,
    mut lat: Latencies,
) -> Report {
    let ops = lat.0.len() as u64;
    Report {
        system: system.into(),
        workload: workload.into(),
        callers,
        secs: elapsed.as_secs_f64(),
        ops,
        ops_per_s: ops as f64 / elapsed.as_secs_f64(),
        p50_us: lat.percentile_us(0.5),
        p99_us: lat.percentile_us(0.99),
        ..Report::default()
    }
}

/// Builds the report of a bulk transfer.
pub fn bulk_report(system: &str, workload: &str, bytes: u64, elapsed: Duration) -> Report {
    Report {
        system: system.into(),
        workload: workload.into(),
        callers: 1,
        secs: elapsed.as_secs_f64(),
        bytes,
        mb_per_s: bytes as f64 / 1e6 / elapsed.as_secs_f64(),
        ..Report::default()
    }
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
