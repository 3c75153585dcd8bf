//! The `qtalk` command line tool as a library: everything the binary does, usable from tests
//! and other programs.
//!
//! - [`url`]: the `tcp://HOST:PORT/Selector` and `unix:///path#Selector` URLs.
//! - [`interop`]: the interop service (`Unary`, `Stream`, `Bytes`, `Error`) that `qtalk
//!   interop` serves, and the callback handlers a checker answers its callbacks with.
//! - [`check`]: the reference's `qtalk check` sequence, run against any interop peer.
//! - [`bench`](mod@bench): throughput and latency measurements against an interop peer.
//! - [`p2p`]: peers reached by name through a rendezvous (`p2p://NAME`, `--via`).
//! - [`certs`]: the certificate of a WebTransport listener, and the development one browsers
//!   accept by hash.
//! - [`peer`]: reaching a peer (spawned command, this binary, or a URL), codec selection.
//! - [`gofmt`]: Go's `%v` rendering of values, for output identical to the reference's.
//! - [`Failure`] and [`exit`]: the error kinds and the process exit codes they map to.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod certs;
pub mod check;
pub mod gofmt;
pub mod interop;
pub mod p2p;
pub mod peer;
pub mod url;

use std::fmt;
use std::time::Duration;

/// Process exit codes of `qtalk`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The remote side answered with an error (`call`), or a check failed (`check`).
    pub const FAILURE: u8 = 1;
    /// Bad usage: unknown option, bad URL, bad argument or environment value.
    pub const USAGE: u8 = 2;
    /// Connection or transport problem: refused or lost connection, peer broke the protocol,
    /// peer could not be started, timeout.
    pub const TRANSPORT: u8 = 3;
}

/// Why a command failed; each kind maps to an [`exit`] code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The remote handler answered with this error text.
    Remote(String),
    /// A check found a difference (or a step did not finish in time).
    Check(String),
    /// The command line or environment is unusable.
    Usage(String),
    /// The connection could not be made, broke, or the peer broke the protocol.
    Transport(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Remote(_) | Failure::Check(_) => exit::FAILURE,
            Failure::Usage(_) => exit::USAGE,
            Failure::Transport(_) => exit::TRANSPORT,
        }
    }

    /// The message, without any prefix.
    pub fn message(&self) -> &str {
        match self {
            Failure::Remote(m) | Failure::Check(m) | Failure::Usage(m) | Failure::Transport(m) => m,
        }
    }

    /// Classifies an rpc error: remote errors stay remote, everything else is transport
    /// (with a hint when the bytes did not decode, which usually means a codec mismatch).
    pub fn from_rpc(context: &str, e: &qtalk::rpc::Error) -> Failure {
        match e {
            qtalk::rpc::Error::Remote(m) => Failure::Remote(m.clone()),
            other => Failure::Transport(format!("{context}: {other}{}", codec_hint(other))),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Remote(m) => write!(f, "remote: {m}"),
            other => f.write_str(other.message()),
        }
    }
}

impl std::error::Error for Failure {}

/// A hint to append to an error message when `e` suggests that the two sides use different
/// codecs (a reply that does not decode); empty otherwise.
pub fn codec_hint(e: &qtalk::rpc::Error) -> &'static str {
    match e {
        qtalk::rpc::Error::Codec(_) => {
            " (does the peer use the same codec? json and cbor do not mix)"
        }
        _ => "",
    }
}

/// Parses a duration such as `10s`, `250ms`, `1.5s`, `2m`, `100us` or `1h`; a bare number is
/// seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(qtalk_cli::parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert_eq!(qtalk_cli::parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert!(qtalk_cli::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10s, 250ms, 1.5s, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = n * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("{s:?} is too long"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration compactly for humans: `812ns`, `71.2µs`, `1.35ms`, `2.00s`.
pub fn human_duration(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1e3 {
        format!("{ns:.0}ns")
    } else if ns < 1e6 {
        format!("{:.1}µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2}ms", ns / 1e6)
    } else {
        format!("{:.2}s", ns / 1e9)
    }
}
