//! `qtalk`: call qtalk peers, serve and check the interop service, benchmark peers.
// One call into the C library (glibc's malloc_trim, see `release_freed_memory`) is the only
// unsafe code.
#![deny(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use qtalk::codec::{Codec, Json};
use qtalk::rpc::{Error as RpcError, Peer};
use qtalk::Value;
use qtalk_cli::interop::{self, Faults};
use qtalk_cli::peer::{self, PeerSpec};
use qtalk_cli::url::{self, Endpoint};
use qtalk_cli::{bench, check, exit, parse_duration, Failure};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the remote side answered with an error (call), or a check failed (check)
  2  usage error: bad option, URL, argument or QTALK_CODEC value
  3  connection or transport error: refused or lost connection, peer could not be
     started, peer broke the protocol, no reply in time (call)";

const URLS: &str = "\
URLs:
  tcp://HOST:PORT/Selector          TCP (HOST may be a name, IPv4 or [IPv6])
  ws://HOST[:PORT]/Selector         WebSocket (port 80 by default; the WebSocket is always
                                    opened at path `/`, as by the Go reference)
  quic://HOST:PORT/Selector         QUIC over UDP (udp:// is the same)
  tls://HOST:PORT/Selector          qmux inside TLS over TCP
  wss://HOST[:PORT]/Selector        WebSocket over TLS (port 443 by default)
  https://HOST[:PORT]/Selector      WebTransport over UDP (port 443 by default; the session
                                    is always opened at path `/`)
                                    For quic://, tls://, wss:// and https://, the server's
                                    certificate must name HOST and is checked against the
                                    system's roots, unless --ca FILE, --cert-hash SHA256 or
                                    --insecure is given
  unix:///abs/path/to.sock#Selector Unix socket, absolute path (three slashes)
  unix:relative/to.sock#Selector    Unix socket, path relative to the current directory
  The selector follows `#` for Unix sockets because the socket path itself may contain
  `/`; write a literal `#` or `%` in a path as %23 or %25.";

#[derive(Parser, Debug)]
#[command(
    name = "qtalk",
    version,
    about = "A utility for the qtalk protocol stack (RPC over qmux)",
    long_about = "A utility for the qtalk protocol stack: RPC over qmux, wire compatible with \
                  qtalk-go. Call remote functions, serve and check the interop service, and \
                  benchmark peers.",
    after_help = format!("Examples:
  qtalk call tcp://127.0.0.1:9000/Upper '\"hello\"'
  qtalk call ws://127.0.0.1:8080/Upper hello
  qtalk interop --listen tcp://127.0.0.1:9000
  qtalk interop --listen quic://127.0.0.1:4242    # self-signed certificate
  qtalk check --insecure --connect quic://127.0.0.1:4242
  qtalk interop --listen https://127.0.0.1:4433/  # WebTransport (browsers) and QUIC
  qtalk check --cert-hash SHA256 --connect https://127.0.0.1:4433/
  qtalk check
  qtalk check --connect ws://127.0.0.1:8080
  QTALK_CODEC=json qtalk check '/path/to/go/qtalk interop'   # the Go reference's CLI
  qtalk bench --duration 1s --json

Logging: set RUST_LOG (e.g. RUST_LOG=debug); logs go to stderr.

{EXIT_CODES}")
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Call a remote function and print its reply as indented JSON
    #[command(
        long_about = "Call a remote function and print its reply as indented JSON (2 spaces) on \
                      stdout. A remote error prints `remote: <text>` on stderr and exits 1.\n\n\
                      Arguments: each ARG is one JSON value; a bare word that is not valid JSON \
                      is taken as a string (`hello` = `\"hello\"`), but an ARG starting with `{`, \
                      `[` or `\"` must be valid JSON. The ARGs are sent as positional parameters, \
                      the way function handlers take them (Go's fn.HandlerFrom, qtalk's `func`): \
                      an array of the ARGs, or `null` when there is none. With --raw, a single ARG \
                      is sent as the value itself (for handlers that read one value, like the \
                      interop service's); several are still an array. (The Go reference's call \
                      builds the value from HTTPie-style `key=value` / `[]=value` pairs instead; \
                      like it, no argument sends null.) Put `--` before arguments that start with \
                      `-` and are not numbers.",
        after_help = format!("Examples:
  qtalk call tcp://127.0.0.1:9000/Upper '\"hello\"'      # sends [\"hello\"]
  qtalk call tcp://127.0.0.1:9000/Upper hello          # the same
  qtalk call tcp://localhost:9000/math.Add 1 2         # sends [1,2]
  qtalk call unix:///run/app.sock#users.Get '{{\"id\":7}}'  # sends [{{\"id\":7}}]
  qtalk call ws://127.0.0.1:8080/Upper hello           # over WebSocket
  qtalk call --ca cert.pem quic://localhost:4242/Upper hello  # over QUIC
  qtalk call --raw tcp://127.0.0.1:9000/Error boom     # sends \"boom\"
  qtalk call --codec cbor --timeout 2s tcp://[::1]:9000/Ping  # sends null

{URLS}

{EXIT_CODES}")
    )]
    Call(CallArgs),
    /// Serve the interop service (on stdin/stdout unless --listen)
    #[command(
        long_about = "Serve the interop service: Unary, Stream and Bytes (each calls the same \
                      selector back on the caller before answering) and Error. Without --listen \
                      it speaks qmux on stdin/stdout and exits when stdin ends; stdout carries \
                      only protocol bytes and logs go to stderr. The codec is CBOR unless \
                      QTALK_CODEC=json. If the peer breaks the protocol (garbage bytes, a \
                      truncated frame, an oversized rpc frame) it exits 3 with one line on \
                      stderr.",
        after_help = format!("Examples:
  qtalk interop                                  # on stdio, for `qtalk check CMD`
  QTALK_CODEC=json qtalk interop
  qtalk interop --listen tcp://127.0.0.1:9000    # port 0 picks a free port
  qtalk interop --listen unix:///tmp/qtalk.sock
  qtalk interop --listen ws://127.0.0.1:8080     # WebSocket, any path
  qtalk interop --listen quic://127.0.0.1:4242   # QUIC, self-signed certificate
  qtalk interop --listen tls://127.0.0.1:9443    # TLS over TCP (or wss://)
  qtalk interop --listen quic://0.0.0.0:4242 --cert cert.pem --key key.pem
  qtalk interop --listen https://127.0.0.1:4433/  # WebTransport and QUIC on one UDP port

With --listen, the address actually listened on is printed on stderr as
`listening on URL`. An https:// listener serves WebTransport (what browsers open with
`new WebTransport(URL)`, any path) and quic:// on the same UDP port, and prints its
certificate's hash as `certificate sha-256: HEX`. Without --cert/--key it makes a
development certificate that browsers accept through serverCertificateHashes with that
hash (ECDSA P-256, valid 13 days; a new one, with a new hash, at each start).

{EXIT_CODES}")
    )]
    Interop(InteropArgs),
    /// Check an interop peer with the reference's check sequence
    #[command(
        long_about = "Check an interop peer with the reference's check sequence: Error and \
                      BadSelector must fail with `test` and `not found: /BadSelector`; Unary must \
                      echo 100, true, \"hello\", {\"foo\":\"bar\"} and [1,2,3] while answering the \
                      peer's callback; Stream must echo those values sent after the call; Bytes \
                      must echo 1 byte, 1 KiB and 1 MiB of random bytes. One line per check is \
                      printed as the reference prints it, then a summary; the first difference \
                      stops with exit code 1.\n\n\
                      The peer is `sh -c CMD` speaking qmux on its stdin/stdout (default: this \
                      program's own `interop`), or a listening peer with --connect. The codec is \
                      CBOR unless QTALK_CODEC=json (a spawned peer inherits the variable).",
        after_help = format!("Examples:
  qtalk check                                      # against this binary's interop
  QTALK_CODEC=json qtalk check
  qtalk check '/path/to/go/qtalk interop'          # any command speaking qmux on stdio
  qtalk check 'ssh build-host qtalk interop'       # ... even a remote one
  qtalk check --connect tcp://127.0.0.1:9000
  qtalk check --connect ws://127.0.0.1:8080

{EXIT_CODES}")
    )]
    Check(CheckArgs),
    /// Benchmark an interop peer: MiB/s, calls/s, latency
    #[command(
        long_about = "Benchmark an interop peer: bulk MiB/s each way through a Bytes raw stream, \
                      unary calls/s with 1 caller and with --concurrency callers, and p50/p99 \
                      latency. Each measurement runs for --duration. Progress goes to stderr, the \
                      table (or with --json a JSON object) to stdout. The peer is chosen as for \
                      `check`; the codec by QTALK_CODEC.",
        after_help = format!("Examples:
  qtalk bench
  qtalk bench --duration 5s --concurrency 128
  qtalk bench --json --connect tcp://127.0.0.1:9000 | jq .unary_sequential
  qtalk bench --connect ws://127.0.0.1:8080

{EXIT_CODES}")
    )]
    Bench(BenchArgs),
    /// Run a rendezvous: peers behind NATs register names and reach each other (p2p://NAME)
    #[command(
        long_about = "Run a rendezvous service over QUIC, on a machine every peer can reach. Peers \
                      (`qtalk interop --p2p NAME --via quic://HOST:PORT`) register names, first \
                      come; a peer asking for a name (`qtalk call|check|bench --via \
                      quic://HOST:PORT p2p://NAME`) is introduced: both learn each other's public \
                      and local addresses and certificate fingerprints and punch through their \
                      NATs at once. When no direct path appears within 3 s, the rendezvous relays \
                      their bytes, which stay encrypted and authenticated between the two peers. \
                      `Stats` (e.g. `qtalk call --insecure quic://HOST:PORT/Stats`) answers its \
                      counters.",
        after_help = "Examples:
  qtalk rendezvous --listen quic://0.0.0.0:4433       # self-signed certificate
  qtalk rendezvous --listen quic://0.0.0.0:4433 --cert cert.pem --key key.pem"
    )]
    Rendezvous(RendezvousArgs),
}

#[derive(Args, Debug)]
struct RendezvousArgs {
    /// Listen on quic://HOST:PORT
    #[arg(long, value_name = "URL")]
    listen: String,
    /// The certificate chain to present (PEM); without it a self-signed certificate for
    /// localhost and the listening host is made
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
struct CallArgs {
    /// Where to call, e.g. tcp://HOST:PORT/Selector or unix:///path/to.sock#Selector (all
    /// forms below)
    #[arg(value_name = "URL")]
    url: String,
    /// Arguments, each a JSON value (a bare word is a string)
    #[arg(
        value_name = "ARGS",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    args: Vec<String>,
    /// Send a single ARG as the value itself instead of as a one-element parameter array
    #[arg(long)]
    raw: bool,
    /// Codec: json or cbor
    #[arg(long, default_value = "json", value_parser = ["json", "cbor"])]
    codec: String,
    /// Give up after this long (connecting and calling), e.g. 5s, 500ms
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    dial: DialArgs,
}

/// How to reach a listening peer: how long connecting may take, which certificates to accept.
#[derive(Args, Debug)]
struct DialArgs {
    /// Give up connecting (TLS, WebSocket and QUIC handshakes included) after this long, e.g.
    /// 3s; never longer than --timeout
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// quic://, tls://, wss://, https://: trust the certificates in this PEM file (a CA, or
    /// the server's own certificate) instead of the system's roots
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// quic://, tls://, wss://, https://: trust the server certificate with this SHA-256
    /// hash (64 hex digits, as printed by `qtalk interop --listen https://...`), whatever it
    /// names, as a browser's serverCertificateHashes; may be repeated
    #[arg(long, value_name = "SHA256", conflicts_with_all = ["ca", "insecure"])]
    cert_hash: Vec<qtalk_mux::tls::CertificateHash>,
    /// quic://, tls://, wss://, https://: accept any server certificate (encrypted but
    /// unauthenticated; for development servers with self-signed certificates)
    #[arg(long, conflicts_with = "ca")]
    insecure: bool,
    /// Reach p2p://NAME peers through the rendezvous at quic://HOST:PORT (--ca and
    /// --insecure then apply to the rendezvous; the peer itself is checked against the
    /// certificate fingerprint the rendezvous vouches for)
    #[arg(long, value_name = "URL")]
    via: Option<String>,
}

impl DialArgs {
    fn settings(&self) -> peer::Dial {
        let trust = match (&self.ca, self.insecure) {
            (_, true) => peer::Trust::Insecure,
            (Some(path), false) => peer::Trust::Roots(path.clone()),
            (None, false) if !self.cert_hash.is_empty() => {
                peer::Trust::Hashes(self.cert_hash.clone())
            }
            (None, false) => peer::Trust::System,
        };
        peer::Dial {
            config: qtalk_mux::Config::default(),
            trust,
            connect_timeout: Some(self.connect_timeout),
        }
    }
}

#[derive(Args, Debug)]
struct InteropArgs {
    /// Listen on tcp://, ws://, tls://, wss://, quic://HOST:PORT, https://HOST:PORT/
    /// (WebTransport and QUIC) or unix:///path instead of serving stdin/stdout
    #[arg(long, value_name = "URL")]
    listen: Option<String>,
    /// tls://, wss://, quic://, https://: the certificate chain to present (PEM); without it
    /// a self-signed certificate for localhost and the listening host is made (for https://,
    /// one browsers accept by its hash)
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<std::path::PathBuf>,
    /// Serve peers that reach this one as NAME through the rendezvous of --via
    #[arg(long, value_name = "NAME", requires = "via", conflicts_with = "listen")]
    p2p: Option<String>,
    /// The rendezvous of --p2p: quic://HOST:PORT
    #[arg(long, value_name = "URL", requires = "p2p")]
    via: Option<String>,
    /// --via: trust the certificates in this PEM file for the rendezvous
    #[arg(long, value_name = "FILE", requires = "p2p")]
    ca: Option<std::path::PathBuf>,
    /// --via: accept any certificate from the rendezvous
    #[arg(long, conflicts_with = "ca", requires = "p2p")]
    insecure: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Shell command of the peer (run with `sh -c`), or the URL of a listening peer (as with
    /// --connect); default: this program's `interop`
    #[arg(value_name = "CMD", conflicts_with = "connect")]
    cmd: Option<String>,
    /// Check a listening peer (tcp://, tls://, ws://, wss://, quic://, https://, unix://)
    /// instead
    #[arg(long, value_name = "URL")]
    connect: Option<String>,
    /// Deadline for connecting and for each check, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// One more Bytes check of this size after the usual ones, e.g. 64MiB (suffixes KiB,
    /// MiB, GiB); may be repeated
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    bytes: Vec<usize>,
    #[command(flatten)]
    dial: DialArgs,
}

/// A byte count: digits with an optional `KiB`, `MiB` or `GiB` suffix.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" | "k" => 10,
        "MiB" | "M" => 20,
        "GiB" | "G" => 30,
        other => return Err(format!("unknown unit {other:?} (use KiB, MiB or GiB)")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 64MiB"))?;
    n.checked_mul(1usize << shift)
        .filter(|&n| n <= 1 << 32)
        .ok_or_else(|| format!("{text:?} is too large (at most 4GiB)"))
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Shell command of the peer (run with `sh -c`), or the URL of a listening peer (as with
    /// --connect); default: this program's `interop`
    #[arg(value_name = "CMD", conflicts_with = "connect")]
    cmd: Option<String>,
    /// Benchmark a listening peer (tcp://, tls://, ws://, wss://, quic://, https://,
    /// unix://) instead
    #[arg(long, value_name = "URL")]
    connect: Option<String>,
    /// How long each measurement runs, e.g. 2s, 500ms
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    duration: Duration,
    /// Callers of the concurrent unary measurement
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Print a JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// Deadline for connecting and for any single call, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    dial: DialArgs,
}

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
            Command::Call(a) => call(a).await,
            Command::Interop(a) => interop_cmd(a, faults).await,
            Command::Check(a) => check_cmd(a).await,
            Command::Bench(a) => bench_cmd(a).await,
            Command::Rendezvous(a) => rendezvous_cmd(a).await,
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

fn parse_url(text: &str) -> Result<url::Target, Failure> {
    url::parse(text).map_err(|e| Failure::Usage(e.to_string()))
}

/// Parses `call`'s arguments: each a JSON value, a bare word a string. None → null; otherwise
/// an array of them (positional parameters), except that with `raw` a single one is sent as
/// itself.
fn call_args(args: &[String], raw: bool) -> Result<Value, Failure> {
    let mut values = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        match qtalk::codec::decode::<Value>(&Json, a.as_bytes()) {
            Ok(v) => values.push(v),
            Err(e) => {
                if a.trim_start().starts_with(['{', '[', '"']) {
                    return Err(Failure::Usage(format!(
                        "argument {} is not valid JSON ({}): {a}",
                        i + 1,
                        e.to_string().trim_start_matches("decode: ")
                    )));
                }
                values.push(Value::Text(a.clone()));
            }
        }
    }
    Ok(match values.len() {
        0 => Value::Null,
        1 if raw => values.pop().unwrap_or_default(),
        _ => Value::Array(values),
    })
}

async fn call(a: CallArgs) -> Result<(), Failure> {
    if let Some(target) = qtalk_cli::p2p::parse(&a.url)? {
        return call_p2p(a, target).await;
    }
    if a.dial.via.is_some() {
        return Err(Failure::Usage(
            "--via applies to p2p://NAME URLs only".into(),
        ));
    }
    let target = parse_url(&a.url)?;
    let selector = peer::require_selector(&target)?.to_string();
    let args = call_args(&a.args, a.raw)?;
    let codec = peer::codec_by_name(&a.codec)
        .ok_or_else(|| Failure::Usage(format!("unknown codec {:?}", a.codec)))?;
    let started = tokio::time::Instant::now();
    let session = peer::connect_within(&target.endpoint, &a.dial.settings(), a.timeout).await?;
    let call = Invocation {
        selector: &selector,
        args: &args,
        started,
        timeout: a.timeout,
        target: &target.to_string(),
    };
    call_on(session, codec, call).await
}

/// `qtalk call --via quic://RDV p2p://NAME/Selector ARGS`.
async fn call_p2p(a: CallArgs, target: qtalk_cli::p2p::P2pTarget) -> Result<(), Failure> {
    let Some(via) = a.dial.via.clone() else {
        return Err(Failure::Usage(
            "p2p:// URLs need --via quic://HOST:PORT (the rendezvous)".into(),
        ));
    };
    let selector = target.selector.clone().ok_or_else(|| {
        Failure::Usage(format!(
            "the URL names no selector to call: write {}{}/Selector",
            qtalk_cli::p2p::SCHEME,
            target.name
        ))
    })?;
    let args = call_args(&a.args, a.raw)?;
    let codec = peer::codec_by_name(&a.codec)
        .ok_or_else(|| Failure::Usage(format!("unknown codec {:?}", a.codec)))?;
    let started = tokio::time::Instant::now();
    let (node, session) =
        qtalk_cli::p2p::connect(&target.name, &via, &a.dial.settings(), a.timeout).await?;
    let call = Invocation {
        selector: &selector,
        args: &args,
        started,
        timeout: a.timeout,
        target: &target.to_string(),
    };
    let result = call_on(session.into_session(), codec, call).await;
    node.close();
    result
}

/// One `qtalk call`: what to call, and by when.
struct Invocation<'a> {
    selector: &'a str,
    args: &'a Value,
    started: tokio::time::Instant,
    timeout: Duration,
    target: &'a str,
}

/// Makes the call on `session`, prints the reply, and closes the session.
async fn call_on(
    session: qtalk_mux::Session,
    codec: Arc<dyn Codec>,
    call: Invocation<'_>,
) -> Result<(), Failure> {
    let Invocation {
        selector,
        args,
        started,
        timeout,
        target,
    } = call;
    // A peer of our own so that calls back to us get `not found` rather than waiting.
    let me = Peer::new(session.clone(), codec);
    me.respond();
    let left = timeout.saturating_sub(started.elapsed());
    let result = me
        .caller()
        .call_timeout::<_, Value>(left, selector, args)
        .await;
    session.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), session.wait()).await;
    match result {
        Ok(v) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
            Ok(())
        }
        Err(RpcError::Remote(m)) => Err(Failure::Remote(m)),
        Err(RpcError::Timeout) => Err(Failure::Transport(format!(
            "no reply from {} within {}",
            target,
            qtalk_cli::human_duration(timeout)
        ))),
        Err(e) => Err(Failure::from_rpc(&format!("calling {target}"), &e)),
    }
}

async fn interop_cmd(a: InteropArgs, faults: Faults) -> Result<(), Failure> {
    let codec = peer::codec_from_env()?;
    if let (Some(name), Some(via)) = (&a.p2p, &a.via) {
        let trust = match (&a.ca, a.insecure) {
            (_, true) => peer::Trust::Insecure,
            (Some(path), false) => peer::Trust::Roots(path.clone()),
            (None, false) => peer::Trust::System,
        };
        let dial = peer::Dial {
            trust,
            ..Default::default()
        };
        return serve_p2p(name, via, &dial, codec).await;
    }
    match a.listen {
        None => {
            if let Some(hint) = interop::terminal_hint(std::io::stdin().is_terminal()) {
                eprintln!("{hint}");
            }
            let session = qtalk_mux::transport::stdio(qtalk_mux::Config::default());
            let peer = interop::serve(session.clone(), codec, faults.clone());
            let fault = tokio::select! {
                end = session.wait() => {
                    // Calls in flight may still find a fault in data that arrived before the
                    // end (e.g. an oversized frame followed by end-of-stream).
                    peer.shutdown(Duration::from_millis(500)).await;
                    match faults.first() {
                        Some(fault) => fault,
                        None => return session_end(end),
                    }
                }
                fault = faults.wait() => fault,
            };
            // Let the answer to the bad call (an error) go out, briefly.
            session.close();
            let _ = tokio::time::timeout(Duration::from_millis(500), session.wait()).await;
            Err(Failure::Transport(format!(
                "peer broke the protocol: {fault}"
            )))
        }
        Some(text) => {
            let target = parse_url(&text)?;
            if target.selector.is_some() {
                return Err(Failure::Usage(format!(
                    "--listen takes an address without a selector: {}",
                    target.endpoint
                )));
            }
            let identity = match (a.cert, a.key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                _ => None,
            };
            listen(target.endpoint, identity, codec).await
        }
    }
}

/// Maps how a stdio session ended to the interop's result.
fn session_end(end: qtalk_mux::Error) -> Result<(), Failure> {
    match end {
        qtalk_mux::Error::PeerClosed | qtalk_mux::Error::Closed => Ok(()),
        qtalk_mux::Error::Io(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        qtalk_mux::Error::Protocol(p) => {
            Err(Failure::Transport(format!("peer broke the protocol: {p}")))
        }
        other => Err(Failure::Transport(other.to_string())),
    }
}

/// The TLS settings of a secure listener: the given certificate and key, or a fresh self-signed
/// certificate for localhost and `host`.
fn server_tls(
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    host: &str,
) -> std::io::Result<(qtalk_mux::tls::rustls::ServerConfig, bool)> {
    match identity {
        Some((cert, key)) => Ok((
            qtalk_mux::tls::server_config(
                qtalk_mux::tls::load_certs(cert)?,
                qtalk_mux::tls::load_key(key)?,
            )?,
            false,
        )),
        None => {
            let mut names = vec!["localhost", "127.0.0.1", "::1"];
            if !names.contains(&host) && !host.is_empty() {
                names.push(host);
            }
            let id = qtalk_mux::tls::self_signed(&names)?;
            Ok((qtalk_mux::tls::server_config(id.certs, id.key)?, true))
        }
    }
}

async fn listen(
    endpoint: Endpoint,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    codec: Arc<dyn Codec>,
) -> Result<(), Failure> {
    let config = qtalk_mux::Config::default();
    let secure = matches!(
        endpoint,
        Endpoint::Quic(_) | Endpoint::Tls(_) | Endpoint::Wss(_) | Endpoint::WebTransport(_)
    );
    if identity.is_some() && !secure {
        return Err(Failure::Usage(
            "--cert and --key apply to tls://, wss://, quic:// and https:// listeners only".into(),
        ));
    }
    // The TLS settings of a secure listener, and whether the certificate was made up here.
    let tls_for = |addr: &str| {
        server_tls(identity.clone(), peer::host_of(addr))
            .map_err(|e| Failure::Usage(format!("cannot set up TLS: {e}")))
    };
    let mut self_signed = false;
    let mut webtransport = None;
    let bound = match &endpoint {
        Endpoint::WebTransport(addr) => {
            let cert = qtalk_cli::certs::webtransport(identity.clone(), peer::host_of(addr))
                .map_err(|e| Failure::Usage(format!("cannot set up TLS: {e}")))?;
            let tls = cert.tls.clone();
            webtransport = Some(cert);
            qtalk_mux::Listener::bind_webtransport(addr.as_str(), tls, config).await
        }
        Endpoint::Tcp(addr) => qtalk_mux::Listener::bind_tcp(addr.as_str(), config).await,
        Endpoint::Ws(addr) => qtalk_mux::Listener::bind_ws(addr.as_str(), config).await,
        Endpoint::Unix(path) => bind_unix(path, config).await,
        Endpoint::Quic(addr) => {
            let (tls, generated) = tls_for(addr)?;
            self_signed = generated;
            qtalk_mux::Listener::bind_quic(addr.as_str(), tls, config).await
        }
        Endpoint::Tls(addr) => {
            let (tls, generated) = tls_for(addr)?;
            self_signed = generated;
            qtalk_mux::Listener::bind_tls(addr.as_str(), tls, config).await
        }
        Endpoint::Wss(addr) => {
            let (tls, generated) = tls_for(addr)?;
            self_signed = generated;
            qtalk_mux::Listener::bind_wss(addr.as_str(), tls, config).await
        }
    };
    let listener = bound.map_err(|e| {
        Failure::Transport(format!(
            "cannot listen on {endpoint}: {}",
            peer::describe_io(&e)
        ))
    })?;
    // The address actually listened on (port 0 picks one).
    let local = listener.local_addr().map(|a| a.to_string());
    let (shown, cleanup) = match (&endpoint, local) {
        (Endpoint::Unix(path), _) => (endpoint.clone(), Some(path.clone())),
        (Endpoint::Tcp(_), Ok(a)) => (Endpoint::Tcp(a), None),
        (Endpoint::Ws(_), Ok(a)) => (Endpoint::Ws(a), None),
        (Endpoint::Quic(_), Ok(a)) => (Endpoint::Quic(a), None),
        (Endpoint::Tls(_), Ok(a)) => (Endpoint::Tls(a), None),
        (Endpoint::Wss(_), Ok(a)) => (Endpoint::Wss(a), None),
        (Endpoint::WebTransport(_), Ok(a)) => (Endpoint::WebTransport(a), None),
        (_, Err(_)) => (endpoint.clone(), None),
    };
    eprintln!("listening on {shown}");
    if let (Endpoint::WebTransport(addr), Some(cert)) = (&shown, &webtransport) {
        eprintln!("serving WebTransport and quic://{addr} on this UDP port");
        eprintln!("{}", qtalk_cli::certs::announcement(cert));
    }
    if self_signed {
        eprintln!(
            "note: serving a self-signed certificate; clients need --insecure, or --cert/--key \
             here and --ca there"
        );
    }
    // glibc keeps what ended sessions freed (a hostile peer can make one hold its whole
    // budget); once a second after a session ended, it is given back.
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn({
        let ended = ended.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if ended.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    release_freed_memory();
                }
            }
        }
    });
    let serve = async {
        loop {
            let session = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let codec = codec.clone();
            let ended = ended.clone();
            tokio::spawn(async move {
                let faults = Faults::new();
                let peer = interop::serve(session.clone(), codec, faults.clone());
                tokio::select! {
                    end = session.wait() => {
                        if let Err(f) = session_end(end) {
                            tracing::warn!("session ended: {}", f.message());
                        }
                    }
                    fault = faults.wait() => {
                        tracing::warn!("closing a session: peer broke the protocol: {fault}");
                        session.close();
                    }
                }
                drop(peer);
                ended.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        }
    };
    tokio::select! {
        _ = serve => Ok(()),
        _ = shutdown_signal() => {
            if let Some(path) = cleanup {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
    }
}

/// Returns memory the allocator keeps after sessions ended to the system. glibc's malloc
/// keeps freed heap memory for reuse (arenas shrink only from the top), so after a peer made a
/// session hold its budget, RSS stayed there; `malloc_trim` releases it. Elsewhere a no-op.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only works on glibc's own bookkeeping,
        // under its own locks; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Binds a Unix socket, replacing a stale socket file nobody listens on.
#[cfg(unix)]
async fn bind_unix(
    path: &std::path::Path,
    config: qtalk_mux::Config,
) -> std::io::Result<qtalk_mux::Listener> {
    match qtalk_mux::Listener::bind_unix(path, config.clone()) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            use std::os::unix::fs::FileTypeExt;
            let is_socket = std::fs::symlink_metadata(path)
                .map(|m| m.file_type().is_socket())
                .unwrap_or(false);
            let alive = tokio::net::UnixStream::connect(path).await.is_ok();
            if is_socket && !alive {
                std::fs::remove_file(path)?;
                qtalk_mux::Listener::bind_unix(path, config)
            } else {
                Err(e)
            }
        }
        other => other,
    }
}

#[cfg(not(unix))]
async fn bind_unix(
    _: &std::path::Path,
    _: qtalk_mux::Config,
) -> std::io::Result<qtalk_mux::Listener> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "Unix sockets are not available on this platform",
    ))
}

/// `qtalk interop --p2p NAME --via quic://RDV`: registers NAME and serves the interop service
/// to every peer that reaches it, until a signal comes.
async fn serve_p2p(
    name: &str,
    via: &str,
    dial: &peer::Dial,
    codec: Arc<dyn Codec>,
) -> Result<(), Failure> {
    let node = qtalk_cli::p2p::node(via, dial).await?;
    let public = node
        .register(name)
        .await
        .map_err(|e| Failure::Transport(format!("cannot register {name:?} on {via}: {e}")))?;
    eprintln!(
        "registered {}{name} on {via} (public address {public}, fingerprint {})",
        qtalk_cli::p2p::SCHEME,
        node.fingerprint()
    );
    let serve = async {
        while let Some(incoming) = node.accept().await {
            eprintln!(
                "path: {} (peer {}{})",
                incoming.path(),
                incoming.peer_fingerprint(),
                incoming
                    .remote_addr()
                    .map(|a| format!(" at {a}"))
                    .unwrap_or_default()
            );
            let session = incoming.into_session();
            let codec = codec.clone();
            tokio::spawn(async move {
                let faults = Faults::new();
                let peer = interop::serve(session.clone(), codec, faults.clone());
                tokio::select! {
                    end = session.wait() => {
                        if let Err(f) = session_end(end) {
                            tracing::warn!("session ended: {}", f.message());
                        }
                    }
                    fault = faults.wait() => {
                        tracing::warn!("closing a session: peer broke the protocol: {fault}");
                        session.close();
                    }
                }
                drop(peer);
            });
        }
    };
    tokio::select! {
        _ = serve => Ok(()),
        _ = node.rendezvous().wait() => {
            // Sessions already made go on without the rendezvous; new peers cannot reach
            // this one any more.
            eprintln!("the rendezvous session ended; serving the peers connected so far");
            shutdown_signal().await;
            Ok(())
        }
        _ = shutdown_signal() => Ok(()),
    }
}

/// `qtalk rendezvous --listen quic://ADDR`.
async fn rendezvous_cmd(a: RendezvousArgs) -> Result<(), Failure> {
    let target = parse_url(&a.listen)?;
    let Endpoint::Quic(addr) = &target.endpoint else {
        return Err(Failure::Usage(format!(
            "--listen takes quic://HOST:PORT, not {}",
            target.endpoint
        )));
    };
    let bind = tokio::net::lookup_host(addr.as_str())
        .await
        .map_err(|e| Failure::Usage(format!("cannot resolve {addr}: {}", peer::describe_io(&e))))?
        .next()
        .ok_or_else(|| Failure::Usage(format!("{addr} resolved to nothing")))?;
    let tls_failure = |e: std::io::Error| Failure::Usage(format!("cannot set up TLS: {e}"));
    let (certs, key, generated) = match (a.cert, a.key) {
        (Some(cert), Some(key)) => (
            qtalk_mux::tls::load_certs(cert).map_err(tls_failure)?,
            qtalk_mux::tls::load_key(key).map_err(tls_failure)?,
            false,
        ),
        _ => {
            let host = peer::host_of(addr);
            let mut names = vec!["localhost", "127.0.0.1", "::1"];
            if !names.contains(&host) && !host.is_empty() {
                names.push(host);
            }
            let id = qtalk_mux::tls::self_signed(&names).map_err(tls_failure)?;
            (id.certs, id.key, true)
        }
    };
    let config = qtalk_p2p::RendezvousConfig::default();
    let rdv = qtalk_p2p::Rendezvous::bind(bind, certs, key, config)
        .await
        .map_err(|e| Failure::Transport(format!("cannot listen on {}: {e}", target.endpoint)))?;
    let local = rdv
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.clone());
    eprintln!("listening on quic://{local}");
    if generated {
        eprintln!(
            "note: serving a self-signed certificate; peers need --insecure, or --cert/--key \
             here and --ca there"
        );
    }
    shutdown_signal().await;
    drop(rdv);
    Ok(())
}

/// The peer of `check` and `bench`: `p2p://NAME` with `--via`, or as [`PeerSpec`] says.
fn peer_spec(
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

async fn check_cmd(a: CheckArgs) -> Result<(), Failure> {
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

async fn bench_cmd(a: BenchArgs) -> Result<(), Failure> {
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
