//! The mixed load: one caller's unary echo calls while a continued `bytes` call streams bulk
//! data the whole time, in one direction, either on the same session or on a second
//! connection between the same two processes (the floor: what a user gets by opening
//! another connection); beside them, the calls with no bulk, and the bulk with no calls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use qtalk::rpc::Caller;
use tokio::io::AsyncWriteExt;

use crate::stats::{drive, Latencies, Report};
use crate::{Direction, CHUNK};

/// Where the bulk data goes, beside the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Beside {
    /// No bulk data: the calls alone.
    None,
    /// The bulk on the calls' session.
    Same,
    /// The bulk on a second connection between the same processes.
    Second,
    /// The bulk alone, no calls (its rate is the reference for the others).
    Alone,
}

impl Beside {
    pub fn name(self) -> &'static str {
        match self {
            Beside::None => "none",
            Beside::Same => "same",
            Beside::Second => "second",
            Beside::Alone => "alone",
        }
    }

    pub const ALL: [Beside; 4] = [Beside::None, Beside::Second, Beside::Same, Beside::Alone];
}

/// A continued `bytes` call moving data in `dir` until told to stop; counts what it moved.
struct Bulk {
    moved: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

async fn start_bulk(caller: Caller, dir: Direction) -> Result<Bulk, Box<dyn std::error::Error>> {
    // Far more than the run moves: the transfer is stopped, not finished.
    let size: u64 = 1 << 50;
    let mut resp = caller.call_raw("bytes", &(dir.arg(), size)).await?;
    if !resp.is_continued() {
        return Err("bytes: the call did not continue".into());
    }
    let _null: qtalk::Value = resp.receive().await?;
    let moved = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (m, s) = (moved.clone(), stop.clone());
    let task = tokio::spawn(async move {
        match dir {
            Direction::Up => {
                let block = crate::ours::block();
                while !s.load(Ordering::Relaxed) {
                    resp.write_bytes(block.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    m.fetch_add(CHUNK as u64, Ordering::Relaxed);
                }
                resp.shutdown().await.map_err(|e| e.to_string())?;
            }
            Direction::Down => {
                while !s.load(Ordering::Relaxed) {
                    match resp.read_chunk(CHUNK).await.map_err(|e| e.to_string())? {
                        Some(chunk) => m.fetch_add(chunk.len() as u64, Ordering::Relaxed),
                        None => return Err("bytes: the download ended".into()),
                    };
                }
            }
        }
        // Dropping the response closes the channel; the handler's writes then fail.
        drop(resp);
        Ok(())
    });
    Ok(Bulk { moved, stop, task })
}

/// One run: warm up for `warmup` with everything running, then measure for `secs`.
pub async fn run(
    system: &str,
    addr: &str,
    codec_name: &str,
    dir: Direction,
    beside: Beside,
    secs: Duration,
    warmup: Duration,
) -> Result<Report, Box<dyn std::error::Error>> {
    let caller = crate::ours::connect(addr, codec_name).await?;
    let bulk = match beside {
        Beside::None => None,
        Beside::Same | Beside::Alone => Some(start_bulk(caller.clone(), dir).await?),
        Beside::Second => {
            let second = crate::ours::connect(addr, codec_name).await?;
            Some(start_bulk(second, dir).await?)
        }
    };
    let op = {
        let caller = caller.clone();
        move |_| {
            let caller = caller.clone();
            async move {
                match caller.call::<_, String>("echo", &["hello"]).await {
                    Ok(s) => s == "hello",
                    Err(e) => {
                        eprintln!("echo failed: {e}");
                        false
                    }
                }
            }
        }
    };
    let (elapsed, mut lat, moved) = if beside == Beside::Alone {
        tokio::time::sleep(warmup).await;
        let (start, from) = (Instant::now(), moved_so_far(&bulk));
        tokio::time::sleep(secs).await;
        (
            start.elapsed(),
            Latencies(Vec::new()),
            moved_so_far(&bulk) - from,
        )
    } else {
        drive(1, warmup, op.clone()).await;
        let from = moved_so_far(&bulk);
        let (elapsed, lat) = drive(1, secs, op).await;
        (elapsed, lat, moved_so_far(&bulk) - from)
    };
    if let Some(b) = bulk {
        b.stop.store(true, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(10), b.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("bulk: {e}").into()),
            Ok(Err(e)) => return Err(format!("bulk task: {e}").into()),
            Err(_) => return Err("bulk: did not stop".into()),
        }
    }
    caller.session().close();
    let secs_f = elapsed.as_secs_f64();
    let ops = lat.0.len() as u64;
    Ok(Report {
        system: system.into(),
        workload: format!("mixed-{}-{}", dir.arg(), beside.name()),
        callers: 1,
        secs: secs_f,
        ops,
        ops_per_s: ops as f64 / secs_f,
        p50_us: lat.percentile_us(0.5),
        p99_us: lat.percentile_us(0.99),
        bytes: moved,
        mb_per_s: moved as f64 / 1e6 / secs_f,
    })
}

fn moved_so_far(bulk: &Option<Bulk>) -> u64 {
    bulk.as_ref().map_or(0, |b| b.moved.load(Ordering::Relaxed))
}
