//! `xbench run`: servers and clients as child processes, systems interleaved round by round.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::mixed::Beside;
use crate::stats::{median, Report};
use crate::{parse_size, System, Workload, TARPC_VERSION};

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Seconds measured per call row.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Rounds (each system runs once per round and workload); at least 3 for medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Caller counts of the call rows, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub callers: Vec<usize>,
    /// Bytes per bulk run and direction; suffixes K, M, G (powers of 1024).
    #[arg(long, default_value = "1G", value_parser = parse_size)]
    pub bytes: u64,
    /// Warm-up per call run, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub warmup_ms: u64,
    /// Workloads to run, comma separated (`mixed-up`, `mixed-down`: one caller's calls beside
    /// bulk data, ours only, see bench/README.md).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "calls,open,up,down"
    )]
    pub workloads: Vec<Workload>,
    /// Systems to run, comma separated (tarpc takes part in calls only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ours-json,ours-cbor,tarpc,raw,qmux"
    )]
    pub systems: Vec<System>,
    /// Tokio worker threads of each server and client process (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

/// A child whose stdout lines arrive on a channel (read by a thread).
pub struct Proc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> std::io::Result<Proc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Lines nobody waits for are dropped; reading on keeps the pipe from filling.
                let _ = tx.send(line);
            }
        });
        Ok(Proc { child, lines: rx })
    }

    /// The next stdout line satisfying `f`, within `timeout`.
    pub fn wait_line(&self, timeout: Duration, mut f: impl FnMut(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if f(&line) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits for the `listening ADDR` line and returns ADDR.
    pub fn listening(&self) -> Option<String> {
        self.wait_line(Duration::from_secs(20), |l| l.starts_with("listening "))
            .map(|l| l["listening ".len()..].trim().to_string())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the child (this process started it) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn self_command() -> Command {
    Command::new(std::env::current_exe().expect("current exe"))
}

/// The load average, from /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One server + client pair; the client's report, or why there is none.
fn one_run(
    system: System,
    workload: Workload,
    callers: usize,
    beside: Option<Beside>,
    a: &RunArgs,
) -> Result<Report, String> {
    let mut cmd = self_command();
    cmd.args(["server", "--system", system.name()]);
    if a.workers > 0 {
        cmd.env("XBENCH_WORKERS", a.workers.to_string());
    }
    let server = Proc::spawn(cmd).map_err(|e| format!("spawn server: {e}"))?;
    let Some(addr) = server.listening() else {
        server.kill();
        return Err("server did not print its address".into());
    };
    let mut cmd = self_command();
    if a.workers > 0 {
        cmd.env("XBENCH_WORKERS", a.workers.to_string());
    }
    cmd.args([
        "client",
        "--system",
        system.name(),
        "--addr",
        &addr,
        "--workload",
        workload_name(workload),
        "--callers",
        &callers.to_string(),
        "--secs",
        &a.secs.to_string(),
        "--warmup-ms",
        &a.warmup_ms.to_string(),
        "--bytes",
        &a.bytes.to_string(),
    ]);
    if let Some(b) = beside {
        cmd.args(["--beside", b.name()]);
    }
    let result = match Proc::spawn(cmd) {
        Err(e) => Err(format!("spawn client: {e}")),
        Ok(mut client) => {
            // Calls take secs + warm-up; bulk gets a minute per GiB, and a minute at least.
            let limit = Duration::from_secs_f64(
                a.secs
                    + a.warmup_ms as f64 / 1e3
                    + 60.0
                    + 60.0 * (a.bytes as f64 / (1u64 << 30) as f64),
            );
            let line = client.wait_line(limit, |l| l.starts_with('{'));
            let status = client.wait_exit(Duration::from_secs(10));
            client.kill();
            match line {
                Some(l) => {
                    serde_json::from_str::<Report>(&l).map_err(|e| format!("bad report {l:?}: {e}"))
                }
                None => Err(format!("client gave no report (exit {status:?})")),
            }
        }
    };
    server.kill();
    result
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Calls => "calls",
        Workload::Open => "open",
        Workload::Up => "up",
        Workload::Down => "down",
        Workload::MixedUp => "mixed-up",
        Workload::MixedDown => "mixed-down",
    }
}

/// The mixed-load cells: each direction asked for, with the first of ours over TCP among the
/// systems, and ours over QUIC when asked for.
fn mixed_cells(a: &RunArgs) -> Vec<(Workload, System)> {
    let tcp = a
        .systems
        .iter()
        .find(|s| matches!(s, System::OursJson | System::OursCbor));
    let quic = a.systems.iter().find(|s| matches!(s, System::OursQuic));
    let mut out = Vec::new();
    for &w in &a.workloads {
        if matches!(w, Workload::MixedUp | Workload::MixedDown) {
            out.extend(tcp.iter().chain(quic.iter()).map(|&&s| (w, s)));
        }
    }
    out
}

/// The cells of the tables: (workload, callers) with the systems taking part, in order.
fn cells(a: &RunArgs) -> Vec<(Workload, usize, Vec<System>)> {
    let mut out = Vec::new();
    for &w in &a.workloads {
        match w {
            Workload::Calls => {
                let systems: Vec<System> = a
                    .systems
                    .iter()
                    .copied()
                    .filter(|s| !matches!(s, System::Qmux))
                    .collect();
                for &n in &a.callers {
                    out.push((w, n, systems.clone()));
                }
            }
            Workload::Open => {
                if let Some(s) = a
                    .systems
                    .iter()
                    .find(|s| matches!(s, System::OursJson | System::OursCbor))
                {
                    out.push((w, 1, vec![*s]));
                }
            }
            Workload::Up | Workload::Down => {
                // tarpc has no byte streams; the codec does not touch the bytes of a
                // continued call, so one of ours is enough.
                let mut systems: Vec<System> = Vec::new();
                if a.systems
                    .iter()
                    .any(|s| matches!(s, System::OursJson | System::OursCbor))
                {
                    systems.push(
                        *a.systems
                            .iter()
                            .find(|s| matches!(s, System::OursJson | System::OursCbor))
                            .unwrap(),
                    );
                }
                for s in [
                    System::Qmux,
                    System::OursQuic,
                    System::MuxQuic,
                    System::Quinn,
                    System::Raw,
                ] {
                    if a.systems.contains(&s) {
                        systems.push(s);
                    }
                }
                out.push((w, 1, systems));
            }
            Workload::MixedUp | Workload::MixedDown => {} // see `mixed_cells`
        }
    }
    out
}

pub fn command_line(a: &RunArgs) -> String {
    format!(
        "cargo run --release -p qtalk-bench -- run --secs {} --rounds {} --callers {} --bytes {} --warmup-ms {} --workloads {} --systems {} --workers {}",
        a.secs,
        a.rounds,
        a.callers.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        a.bytes,
        a.warmup_ms,
        a.workloads.iter().map(|w| workload_name(*w)).collect::<Vec<_>>().join(","),
        a.systems.iter().map(|s| s.name()).collect::<Vec<_>>().join(","),
        a.workers,
    )
}

pub fn run(a: RunArgs) -> i32 {
    if cfg!(debug_assertions) {
        eprintln!(
            "xbench: this is a debug build; measure with `cargo run --release -p qtalk-bench`"
        );
    }
    let rounds = a.rounds.max(1);
    let load_before = loadavg();
    let started = Instant::now();
    let cells = cells(&a);
    let mixed = mixed_cells(&a);
    let mut results: BTreeMap<(usize, String), Vec<Report>> = BTreeMap::new();
    let mut mixed_results: BTreeMap<(usize, &'static str), Vec<Report>> = BTreeMap::new();
    let mut failures = 0;
    for round in 0..rounds {
        for (ci, (w, callers, systems)) in cells.iter().enumerate() {
            // Rotate the order each round, so no system always runs first.
            let k = systems.len();
            for i in 0..k {
                let system = systems[(i + round) % k];
                eprint!(
                    "round {}/{} {} callers={} {} ... ",
                    round + 1,
                    rounds,
                    workload_name(*w),
                    callers,
                    system.name()
                );
                match one_run(system, *w, *callers, None, &a) {
                    Ok(r) => {
                        if r.bytes > 0 {
                            eprintln!("{:.0} MB/s", r.mb_per_s);
                        } else {
                            eprintln!(
                                "{:.0} calls/s, p50 {:.1} us, p99 {:.1} us",
                                r.ops_per_s, r.p50_us, r.p99_us
                            );
                        }
                        results
                            .entry((ci, system.name().into()))
                            .or_default()
                            .push(r);
                    }
                    Err(e) => {
                        failures += 1;
                        eprintln!("failed: {e}");
                    }
                }
            }
        }
        for (mi, &(w, system)) in mixed.iter().enumerate() {
            let k = Beside::ALL.len();
            for i in 0..k {
                let beside = Beside::ALL[(i + round) % k];
                eprint!(
                    "round {}/{} {} beside={} {} ... ",
                    round + 1,
                    rounds,
                    workload_name(w),
                    beside.name(),
                    system.name()
                );
                match one_run(system, w, 1, Some(beside), &a) {
                    Ok(r) => {
                        eprintln!(
                            "p50 {:.1} us, p99 {:.1} us, bulk {:.0} MB/s",
                            r.p50_us, r.p99_us, r.mb_per_s
                        );
                        mixed_results
                            .entry((mi, beside.name()))
                            .or_default()
                            .push(r);
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

    println!("## xbench results\n");
    println!(
        "Each row: median of {rounds} runs, each a fresh server process and a fresh client process on \
         127.0.0.1, the systems interleaved round by round. tarpc {TARPC_VERSION} (JSON serde transport). \
         Load average before: {load_before}; after: {load_after}; {:.0} s in all.\n",
        started.elapsed().as_secs_f64()
    );
    let get = |ci: usize, s: System| results.get(&(ci, s.name().to_string()));
    let med = |v: Option<&Vec<Report>>, f: fn(&Report) -> f64| {
        v.map(|v| median(v.iter().map(f).collect()))
    };

    // Call rows.
    let call_cells: Vec<_> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0 == Workload::Calls)
        .collect();
    if !call_cells.is_empty() {
        println!(
            "### Unary echo of \"hello\", one connection, {} s per run\n",
            a.secs
        );
        println!("| callers | system | calls/s | p50 µs | p99 µs | calls/s ÷ tarpc | calls/s ÷ raw | p50 ÷ raw p50 | calls/s of each run |");
        println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for (ci, (_, callers, systems)) in &call_cells {
            let tarpc_rate = med(get(*ci, System::Tarpc), |r| r.ops_per_s);
            let raw_rate = med(get(*ci, System::Raw), |r| r.ops_per_s);
            let raw_p50 = med(get(*ci, System::Raw), |r| r.p50_us);
            for &s in systems {
                let Some(runs) = get(*ci, s) else {
                    println!(
                        "| {callers} | {} | failed | | | | | | |",
                        label(s, *callers)
                    );
                    continue;
                };
                let rate = median(runs.iter().map(|r| r.ops_per_s).collect());
                let p50 = median(runs.iter().map(|r| r.p50_us).collect());
                let p99 = median(runs.iter().map(|r| r.p99_us).collect());
                let ratio = |x: f64, base: Option<f64>, skip: bool| match base {
                    Some(b) if !skip && b > 0.0 => format!("{:.2}×", x / b),
                    _ => String::new(),
                };
                println!(
                    "| {callers} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} |",
                    label(s, *callers),
                    rate,
                    p50,
                    p99,
                    ratio(rate, tarpc_rate, s == System::Tarpc || s == System::Raw),
                    ratio(rate, raw_rate, s == System::Raw),
                    ratio(p50, raw_p50, s == System::Raw),
                    runs.iter()
                        .map(|r| format!("{:.0}", r.ops_per_s))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        println!();
        // The cost of the middleware: the same service with and without the layers, run
        // after run (the runs of one round are back to back).
        for (ci, (_, callers, _)) in &call_cells {
            let (Some(with), Some(without)) =
                (get(*ci, System::OursLayers), get(*ci, System::OursCbor))
            else {
                continue;
            };
            let rate = |v: &Vec<Report>| median(v.iter().map(|r| r.ops_per_s).collect());
            let per_round: Vec<String> = with
                .iter()
                .zip(without)
                .map(|(a, b)| format!("{:.3}", a.ops_per_s / b.ops_per_s))
                .collect();
            println!(
                "Layers (auth + metrics) at {callers} callers: {:.0} ÷ {:.0} calls/s = {:.3} \
                 (medians); per round {}.",
                rate(with),
                rate(without),
                rate(with) / rate(without),
                per_round.join(", ")
            );
        }
        println!();
    }

    // Channel opens, against the raw ping-pong of the 1-caller call cell.
    let raw1_p50 = cells
        .iter()
        .enumerate()
        .find(|(_, c)| c.0 == Workload::Calls && c.1 == 1)
        .and_then(|(ci, _)| med(get(ci, System::Raw), |r| r.p50_us));
    for (ci, (w, _, systems)) in cells.iter().enumerate() {
        if *w != Workload::Open {
            continue;
        }
        println!(
            "### qmux channel open alone (one round trip), 1 at a time, {} s per run
",
            a.secs
        );
        println!("| operation | opens/s | p50 µs | p99 µs | p50 ÷ raw ping-pong p50 | opens/s of each run |");
        println!("| --- | ---: | ---: | ---: | ---: | --- |");
        for &s in systems {
            let Some(runs) = get(ci, s) else {
                println!("| open + drop a channel | failed | | | | |");
                continue;
            };
            let p50 = median(runs.iter().map(|r| r.p50_us).collect());
            println!(
                "| open + drop a channel | {:.0} | {:.1} | {:.1} | {} | {} |",
                median(runs.iter().map(|r| r.ops_per_s).collect()),
                p50,
                median(runs.iter().map(|r| r.p99_us).collect()),
                raw1_p50.map_or(String::new(), |b| format!("{:.2}×", p50 / b)),
                runs.iter()
                    .map(|r| format!("{:.0}", r.ops_per_s))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        println!();
    }

    // Bulk rows.
    let bulk_cells: Vec<_> = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.0, Workload::Up | Workload::Down))
        .collect();
    if !bulk_cells.is_empty() {
        println!(
            "### Bulk bytes, {} MiB per run, {} KiB writes (ours: through one continued call)\n",
            a.bytes >> 20,
            crate::CHUNK >> 10
        );
        println!("| direction | system | MB/s | ÷ raw | MB/s of each run |");
        println!("| --- | --- | ---: | ---: | --- |");
        for (ci, (w, _, systems)) in &bulk_cells {
            let raw = med(get(*ci, System::Raw), |r| r.mb_per_s);
            let dir = match w {
                Workload::Up => "client → server",
                _ => "server → client",
            };
            for &s in systems {
                let Some(runs) = get(*ci, s) else {
                    println!("| {dir} | {} | failed | | |", bulk_label(s));
                    continue;
                };
                let mbs = median(runs.iter().map(|r| r.mb_per_s).collect());
                let ratio = match raw {
                    Some(b) if s != System::Raw && b > 0.0 => format!("{:.2}×", mbs / b),
                    _ => String::new(),
                };
                println!(
                    "| {dir} | {} | {:.0} | {} | {} |",
                    bulk_label(s),
                    mbs,
                    ratio,
                    runs.iter()
                        .map(|r| format!("{:.0}", r.mb_per_s))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        println!();
    }
    print_mixed(&a, &mixed, &mixed_results);
    println!("Reproduce: `{}`", command_line(&a));
    if failures > 0 {
        println!("\n{failures} run(s) failed (see stderr).");
        1
    } else {
        0
    }
}

/// The mixed-load table: per direction, the calls alone, beside bulk on a second connection
/// (the floor), beside bulk on the same session, and the bulk alone; ratios to the floor.
fn print_mixed(
    a: &RunArgs,
    mixed: &[(Workload, System)],
    results: &BTreeMap<(usize, &'static str), Vec<Report>>,
) {
    if mixed.is_empty() {
        return;
    }
    println!(
        "### Mixed load: one caller's unary echo calls beside a continued call streaming bulk \
         data ({} KiB writes), {} s per run\n",
        crate::CHUNK >> 10,
        a.secs
    );
    println!("| system | bulk | bulk on | call p50 µs | call p99 µs | p50 ÷ floor | p99 ÷ floor | bulk MB/s | bulk ÷ alone | p50, p99 µs of each run | MB/s of each run |");
    println!("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for (mi, &(w, system)) in mixed.iter().enumerate() {
        let sys = match system {
            System::OursQuic => "qtalk over QUIC",
            _ => "qtalk over qmux",
        };
        let dir = match w {
            Workload::MixedUp => "client → server",
            _ => "server → client",
        };
        let get = |b: Beside| results.get(&(mi, b.name()));
        let med =
            |b: Beside, f: fn(&Report) -> f64| get(b).map(|v| median(v.iter().map(f).collect()));
        let floor_p50 = med(Beside::Second, |r| r.p50_us);
        let floor_p99 = med(Beside::Second, |r| r.p99_us);
        let alone = med(Beside::Alone, |r| r.mb_per_s);
        for b in [Beside::None, Beside::Second, Beside::Same, Beside::Alone] {
            let on = match b {
                Beside::None => "— (calls alone)",
                Beside::Second => "a second connection (floor)",
                Beside::Same => "**the same session**",
                Beside::Alone => "— (bulk alone)",
            };
            let Some(runs) = get(b) else {
                println!("| {sys} | {dir} | {on} | failed | | | | | | | |");
                continue;
            };
            let ratio = |x: Option<f64>, base: Option<f64>| match (x, base) {
                (Some(x), Some(b)) if b > 0.0 => format!("{:.2}×", x / b),
                _ => String::new(),
            };
            let calls = b != Beside::Alone;
            let bulk = b != Beside::None;
            let p50 = med(b, |r| r.p50_us);
            let p99 = med(b, |r| r.p99_us);
            let mbs = med(b, |r| r.mb_per_s);
            let cell = |v: Option<f64>, show: bool, digits: usize| match (v, show) {
                (Some(v), true) => format!("{v:.digits$}"),
                _ => String::new(),
            };
            println!(
                "| {sys} | {dir} | {on} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(p50, calls, 1),
                cell(p99, calls, 1),
                if b == Beside::Same {
                    ratio(p50, floor_p50)
                } else {
                    String::new()
                },
                if b == Beside::Same {
                    ratio(p99, floor_p99)
                } else {
                    String::new()
                },
                cell(mbs, bulk, 0),
                if bulk && b != Beside::Alone {
                    ratio(mbs, alone)
                } else {
                    String::new()
                },
                if calls {
                    runs.iter()
                        .map(|r| format!("{:.0}/{:.0}", r.p50_us, r.p99_us))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    String::new()
                },
                if bulk {
                    runs.iter()
                        .map(|r| format!("{:.0}", r.mb_per_s))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    String::new()
                },
            );
        }
    }
    println!();
}

fn label(s: System, callers: usize) -> &'static str {
    match (s, callers) {
        (System::OursJson, _) => "**qtalk JSON**",
        (System::OursCbor, _) => "**qtalk CBOR**",
        (System::Tarpc, _) => "tarpc JSON",
        (System::Raw, 1) => "raw TCP ping-pong",
        (System::Raw, _) => "raw TCP, pipelined",
        (System::Qmux, _) => "bare qmux channel",
        (System::OursQuic, _) => "**qtalk CBOR over QUIC**",
        (System::Quinn, _) => "bare quinn, a stream per round trip",
        (System::MuxQuic, _) => "bare channel over QUIC, one per round trip",
        (System::QuicFloor, _) => "quinn-proto in one task, no hops (floor)",
        (System::OursLayers, _) => "**qtalk CBOR, auth + metrics layers**",
    }
}

fn bulk_label(s: System) -> &'static str {
    match s {
        System::OursJson | System::OursCbor => "**qtalk continued call**",
        System::Tarpc => "tarpc",
        System::Raw => "raw TCP",
        System::Qmux => "bare qmux channel",
        System::OursQuic => "**qtalk continued call over QUIC**",
        System::Quinn => "bare quinn stream",
        System::MuxQuic => "bare channel over QUIC",
        System::QuicFloor => "quinn-proto in one task",
        System::OursLayers => "qtalk continued call, layers",
    }
}
