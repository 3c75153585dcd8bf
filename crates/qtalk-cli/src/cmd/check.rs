//! `qtalk check` and `qtalk bench`: the checker and the benchmark against an interop peer.

use std::io::Write;
use std::time::Duration;

use qtalk_cli::interop;
use qtalk_cli::peer::{self, PeerSpec};
use qtalk_cli::{bench, check, Failure};

use super::args::{BenchArgs, CheckArgs};
use super::parse_url;

/// The peer of `check` and `bench`: `p2p://NAME` with `--via`, or as [`PeerSpec`] says.
pub(crate) fn peer_spec(
    cmd: Option<String>,
    connect: Option<String>,
    via: Option<String>,
) -> Result<PeerSpec, Failure> {
    let named = cmd
        .as_deref()
        .or(connect.as_deref())
        .map(qtalk_cli::p2p::parse)
        .transpose()?
        .flatten();
    match (named, via) {
        (Some(target), Some(via)) => {
            if target.selector.is_some() {
                return Err(Failure::Usage(format!(
                    "{target}: name the peer only (p2p://NAME), without a selector"
                )));
            }
            return Ok(PeerSpec::P2p {
                name: target.name,
                via,
            });
        }
        (Some(_), None) => {
            return Err(Failure::Usage(
                "p2p:// peers need --via quic://HOST:PORT (the rendezvous)".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Failure::Usage(
                "--via applies to p2p://NAME peers only".into(),
            ))
        }
        (None, None) => {}
    }
    match (cmd, connect) {
        (_, Some(u)) => {
            let target = parse_url(&u)?;
            Ok(PeerSpec::Connect(target.endpoint))
        }
        (Some(c), None) => {
            let t = c.trim();
            if [
                "tcp://", "tls://", "unix:", "udp://", "quic://", "ws://", "wss://", "https://",
            ]
            .iter()
            .any(|p| t.starts_with(p))
            {
                // A URL instead of a command: a listening peer, as the reference's checker
                // takes `udp://host:port`.
                let target = parse_url(t)?;
                return Ok(PeerSpec::Connect(target.endpoint));
            }
            Ok(PeerSpec::Command(c))
        }
        (None, None) => Ok(PeerSpec::SelfInterop),
    }
}

pub(crate) async fn check_cmd(a: CheckArgs) -> Result<(), Failure> {
    let codec = peer::codec_from_env()?;
    if codec.name() == "json" {
        eprintln!("* Using JSON codec");
    }
    let spec = peer_spec(a.cmd, a.connect, a.dial.via.clone())?;
    let mut conn = peer::open(&spec, &a.dial.settings(), a.timeout).await?;
    let me = interop::serve_callbacks(conn.session.clone(), codec.clone());
    let mut options = check::Options {
        timeout: a.timeout,
        ..Default::default()
    };
    options.byte_sizes.extend(a.bytes.iter().copied());
    let mut out = std::io::stdout();
    let result = check::run(me.caller(), &options, &mut out).await;
    let result = match result {
        Err(Failure::Transport(m)) => Err(Failure::Transport(conn.explain(m).await)),
        other => other,
    };
    me.close();
    let status = conn.shutdown(Duration::from_secs(3)).await;
    let summary = result?;
    if let Some(status) = status.filter(|s| !s.success()) {
        tracing::warn!("the peer exited with {status} after the checks");
    }
    // A closed stdout (`qtalk check | head -1`) is not worth a panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "ok: {} checks passed in {} (codec {}, peer {spec})",
        summary.passed,
        qtalk_cli::human_duration(summary.elapsed),
        codec.name(),
    );
    let _ = out.flush();
    Ok(())
}

pub(crate) async fn bench_cmd(a: BenchArgs) -> Result<(), Failure> {
    if let Some(warning) = bench::debug_build_warning() {
        eprintln!("{warning}");
    }
    let codec = peer::codec_from_env()?;
    let spec = peer_spec(a.cmd, a.connect, a.dial.via.clone())?;
    let mut conn = peer::open(&spec, &a.dial.settings(), a.timeout).await?;
    let me = interop::serve_callbacks(conn.session.clone(), codec);
    let options = bench::Options {
        duration: a.duration,
        concurrency: usize::from(a.concurrency),
        timeout: a.timeout,
    };
    let result = bench::run(me.caller(), &options, &spec.to_string()).await;
    let result = match result {
        Err(Failure::Transport(m)) => Err(Failure::Transport(conn.explain(m).await)),
        other => other,
    };
    me.close();
    conn.shutdown(Duration::from_secs(3)).await;
    let report = result?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Transport(format!("encoding the report: {e}")))?;
        let _ = writeln!(out, "{text}");
    } else {
        let _ = write!(out, "{}", report.table());
    }
    let _ = out.flush();
    Ok(())
}
