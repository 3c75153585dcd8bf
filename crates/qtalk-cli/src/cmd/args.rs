//! The command line: subcommands, their options, and the help texts.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use qtalk_cli::{parse_duration, peer};

pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the remote side answered with an error (call), or a check failed (check)
  2  usage error: bad option, URL, argument or QTALK_CODEC value
  3  connection or transport error: refused or lost connection, peer could not be
     started, peer broke the protocol, no reply in time (call)";

pub(crate) const URLS: &str = "\
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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
  qtalk call --meta authorization=secret tcp://127.0.0.1:9999/Upper hello  # with metadata
  qtalk call --ca ca.pem --cert me.pem --key me.key tls://host:9443/Upper hi  # mutual TLS
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
  qtalk interop --listen tls://0.0.0.0:9443 --cert cert.pem --key key.pem --client-ca ca.pem
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
pub(crate) struct RendezvousArgs {
    /// Listen on quic://HOST:PORT
    #[arg(long, value_name = "URL")]
    pub(crate) listen: String,
    /// The certificate chain to present (PEM); without it a self-signed certificate for
    /// localhost and the listening host is made
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct CallArgs {
    /// Where to call, e.g. tcp://HOST:PORT/Selector or unix:///path/to.sock#Selector (all
    /// forms below)
    #[arg(value_name = "URL")]
    pub(crate) url: String,
    /// Arguments, each a JSON value (a bare word is a string)
    #[arg(
        value_name = "ARGS",
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    pub(crate) args: Vec<String>,
    /// Send a single ARG as the value itself instead of as a one-element parameter array
    #[arg(long)]
    pub(crate) raw: bool,
    /// Codec: json or cbor
    #[arg(long, default_value = "json", value_parser = ["json", "cbor"])]
    pub(crate) codec: String,
    /// Give up after this long (connecting and calling), e.g. 5s, 500ms; what is left of it
    /// when the call goes out is sent as the call's deadline
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Metadata sent with the call, e.g. --meta authorization=secret (repeatable)
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub(crate) meta: Vec<(String, String)>,
    #[command(flatten)]
    pub(crate) dial: DialArgs,
}

/// A `KEY=VALUE` metadata entry (the key not empty).
pub(crate) fn parse_meta(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// How to reach a listening peer: how long connecting may take, which certificates to accept.
#[derive(Args, Debug)]
pub(crate) struct DialArgs {
    /// Give up connecting (TLS, WebSocket and QUIC handshakes included) after this long, e.g.
    /// 3s; never longer than --timeout
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub(crate) connect_timeout: Duration,
    /// quic://, tls://, wss://, https://: trust the certificates in this PEM file (a CA, or
    /// the server's own certificate) instead of the system's roots
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// quic://, tls://, wss://, https://: trust the server certificate with this SHA-256
    /// hash (64 hex digits, as printed by `qtalk interop --listen https://...`), whatever it
    /// names, as a browser's serverCertificateHashes; may be repeated
    #[arg(long, value_name = "SHA256", conflicts_with_all = ["ca", "insecure"])]
    pub(crate) cert_hash: Vec<qtalk_mux::tls::CertificateHash>,
    /// quic://, tls://, wss://, https://: accept any server certificate (encrypted but
    /// unauthenticated; for development servers with self-signed certificates)
    #[arg(long, conflicts_with = "ca")]
    pub(crate) insecure: bool,
    /// quic://, tls://, wss://: present this client certificate chain (PEM) to servers that
    /// ask for one (see `interop --client-ca`)
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// Reach p2p://NAME peers through the rendezvous at quic://HOST:PORT (--ca and
    /// --insecure then apply to the rendezvous; the peer itself is checked against the
    /// certificate fingerprint the rendezvous vouches for)
    #[arg(long, value_name = "URL")]
    pub(crate) via: Option<String>,
}

impl DialArgs {
    pub(crate) fn settings(&self) -> peer::Dial {
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
            client_certificate: self.cert.clone().zip(self.key.clone()),
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct InteropArgs {
    /// Listen on tcp://, ws://, tls://, wss://, quic://HOST:PORT, https://HOST:PORT/
    /// (WebTransport and QUIC) or unix:///path instead of serving stdin/stdout
    #[arg(long, value_name = "URL")]
    pub(crate) listen: Option<String>,
    /// tls://, wss://, quic://, https://: the certificate chain to present (PEM); without it
    /// a self-signed certificate for localhost and the listening host is made (for https://,
    /// one browsers accept by its hash)
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// The private key of --cert (PEM)
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// tls://, wss://, quic://: require every client to present a certificate issued by a CA
    /// in this PEM file (mutual TLS); clients without one are refused in the handshake
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub(crate) client_ca: Option<std::path::PathBuf>,
    /// Serve peers that reach this one as NAME through the rendezvous of --via
    #[arg(long, value_name = "NAME", requires = "via", conflicts_with = "listen")]
    pub(crate) p2p: Option<String>,
    /// The rendezvous of --p2p: quic://HOST:PORT
    #[arg(long, value_name = "URL", requires = "p2p")]
    pub(crate) via: Option<String>,
    /// --via: trust the certificates in this PEM file for the rendezvous
    #[arg(long, value_name = "FILE", requires = "p2p")]
    pub(crate) ca: Option<std::path::PathBuf>,
    /// --via: accept any certificate from the rendezvous
    #[arg(long, conflicts_with = "ca", requires = "p2p")]
    pub(crate) insecure: bool,
}

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    /// Shell command of the peer (run with `sh -c`), or the URL of a listening peer (as with
    /// --connect); default: this program's `interop`
    #[arg(value_name = "CMD", conflicts_with = "connect")]
    pub(crate) cmd: Option<String>,
    /// Check a listening peer (tcp://, tls://, ws://, wss://, quic://, https://, unix://)
    /// instead
    #[arg(long, value_name = "URL")]
    pub(crate) connect: Option<String>,
    /// Deadline for connecting and for each check, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// One more Bytes check of this size after the usual ones, e.g. 64MiB (suffixes KiB,
    /// MiB, GiB); may be repeated
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) bytes: Vec<usize>,
    #[command(flatten)]
    pub(crate) dial: DialArgs,
}

/// A byte count: digits with an optional `KiB`, `MiB` or `GiB` suffix.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
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
pub(crate) struct BenchArgs {
    /// Shell command of the peer (run with `sh -c`), or the URL of a listening peer (as with
    /// --connect); default: this program's `interop`
    #[arg(value_name = "CMD", conflicts_with = "connect")]
    pub(crate) cmd: Option<String>,
    /// Benchmark a listening peer (tcp://, tls://, ws://, wss://, quic://, https://,
    /// unix://) instead
    #[arg(long, value_name = "URL")]
    pub(crate) connect: Option<String>,
    /// How long each measurement runs, e.g. 2s, 500ms
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Callers of the concurrent unary measurement
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) concurrency: u16,
    /// Print a JSON object instead of a table
    #[arg(long)]
    pub(crate) json: bool,
    /// Deadline for connecting and for any single call, e.g. 10s
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    #[command(flatten)]
    pub(crate) dial: DialArgs,
}
