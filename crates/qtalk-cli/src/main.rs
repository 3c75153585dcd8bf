//! `qtalk`: call qtalk peers, serve and check the interop service, benchmark peers.
// One call into the C library (glibc's malloc_trim, see `release_freed_memory`) is the only
// unsafe code.
#![deny(unsafe_code)]

mod cmd;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use qtalk_cli::interop::Faults;
use qtalk_cli::{exit, Failure};

use cmd::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Call(_) => "call",
        Command::Interop(_) => "interop",
        Command::Check(_) => "check",
        Command::Bench(_) => "bench",
        Command::Rendezvous(_) => "rendezvous",
    };
    let faults = Faults::new();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(name, &Failure::Transport(format!("cannot start: {e}"))),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Call(a) => cmd::call::call(a).await,
            Command::Interop(a) => cmd::serve::interop_cmd(a, faults).await,
            Command::Check(a) => cmd::check::check_cmd(a).await,
            Command::Bench(a) => cmd::check::bench_cmd(a).await,
            Command::Rendezvous(a) => cmd::p2p::rendezvous_cmd(a).await,
        }
    });
    let code = match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => report(name, &f),
    };
    // Don't wait for blocking stdin reads still parked in the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Prints the one-line error for `f` and returns its exit code.
fn report(command: &str, f: &Failure) -> ExitCode {
    let _ = std::io::stdout().flush();
    match f {
        Failure::Remote(m) => eprintln!("remote: {m}"),
        other => eprintln!("qtalk {command}: {}", other.message()),
    }
    ExitCode::from(f.exit_code())
}

fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // web-transport-quinn warns at every ordinary close of a session (its reader of the
        // peer's close capsule sees the connection end first).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,web_transport_quinn=error"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .with_filter(filter);
    let _ = tracing_subscriber::registry().with(fmt).try_init();
}
