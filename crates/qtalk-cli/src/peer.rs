//! Reaching a peer: a spawned command, this binary's own `interop`, or a URL; and choosing the
//! codec.

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::{Cbor, Codec, Json};
use tokio::process::{Child, Command};

use crate::url::{Endpoint, Target};
use crate::Failure;

/// The environment variable that selects the codec of `interop`, `check` and `bench`.
pub const CODEC_ENV: &str = "QTALK_CODEC";

/// A codec by name: `json` or `cbor` (case-insensitive).
pub fn codec_by_name(name: &str) -> Option<Arc<dyn Codec>> {
    match name.to_ascii_lowercase().as_str() {
        "json" => Some(Arc::new(Json)),
        "cbor" => Some(Arc::new(Cbor)),
        _ => None,
    }
}

/// The codec chosen by `QTALK_CODEC`, as the reference chooses it: `json` selects JSON;
/// unset or empty selects CBOR. Unlike the reference, `cbor` is accepted explicitly and any
/// other value is a usage error rather than silently CBOR.
pub fn codec_from_env() -> Result<Arc<dyn Codec>, Failure> {
    match std::env::var(CODEC_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Arc::new(Cbor)),
        Err(std::env::VarError::NotUnicode(_)) => Err(Failure::Usage(format!(
            "{CODEC_ENV} must be `json` or `cbor`"
        ))),
        Ok(v) if v.trim().is_empty() => Ok(Arc::new(Cbor)),
        Ok(v) => codec_by_name(v.trim())
            .ok_or_else(|| Failure::Usage(format!("{CODEC_ENV}={v:?}: must be `json` or `cbor`"))),
    }
}

/// Which peer `check` and `bench` talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSpec {
    /// This very binary, run as `<current exe> interop` (the default).
    SelfInterop,
    /// A shell command (`sh -c CMD`) speaking qmux on its stdin/stdout.
    Command(String),
    /// A listening peer.
    Connect(Endpoint),
    /// A peer registered as `name` on the rendezvous at `via` (`quic://HOST:PORT`).
    P2p {
        /// Its name.
        name: String,
        /// The rendezvous.
        via: String,
    },
}

impl std::fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerSpec::SelfInterop => f.write_str("this program's interop"),
            PeerSpec::Command(c) => write!(f, "`{c}`"),
            PeerSpec::Connect(e) => write!(f, "{e}"),
            PeerSpec::P2p { name, via } => write!(f, "{}{name} via {via}", crate::p2p::SCHEME),
        }
    }
}

/// A session with a peer, and the peer's process when we started it.
#[derive(Debug)]
pub struct Connection {
    /// The qmux session.
    pub session: qtalk_mux::Session,
    child: Option<Child>,
    /// The node a P2P session was made with (its rendezvous connection carries a relayed
    /// session).
    node: Option<qtalk_p2p::Node>,
}

impl Connection {
    /// The peer process's exit status, if it was spawned and has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Explains a broken session: the session's error, plus the peer process's exit status
    /// when it has exited (give it a moment to be reaped).
    pub async fn explain(&mut self, error: impl std::fmt::Display) -> String {
        if self.child.is_some() {
            for _ in 0..20 {
                if let Some(status) = self.exited() {
                    return format!("{error} (the peer process exited: {status})");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        error.to_string()
    }

    /// Ends the session (queued frames are flushed first) and, for a spawned peer, waits up to
    /// `grace` for it to exit after its stdin closed, then kills it. Returns its exit status.
    pub async fn shutdown(mut self, grace: Duration) -> Option<ExitStatus> {
        self.session.close();
        let _ = tokio::time::timeout(grace, self.session.wait()).await;
        if let Some(node) = self.node.take() {
            node.close();
        }
        let mut child = self.child.take()?;
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.kill().await;
                child.wait().await.ok()
            }
        }
    }
}

/// Which TLS servers (`tls://`, `wss://`, `quic://`, `https://`) a client believes: the
/// certificates it accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Certificates the operating system trusts (the default).
    #[default]
    System,
    /// Certificates issued by the roots in this PEM file (a private CA, or a server's
    /// self-signed certificate itself).
    Roots(PathBuf),
    /// Any certificate: encrypted but unauthenticated, for development servers with
    /// self-signed certificates (as the reference's checker).
    Insecure,
    /// The certificates with these SHA-256 hashes, whatever they name or who issued them (as
    /// a browser's `serverCertificateHashes`).
    Hashes(Vec<qtalk_mux::tls::CertificateHash>),
}

impl Trust {
    /// The rustls client settings for this choice.
    pub fn client_config(&self) -> io::Result<qtalk_mux::tls::rustls::ClientConfig> {
        match self {
            Trust::System => qtalk_mux::tls::platform_client_config(),
            Trust::Roots(path) => qtalk_mux::tls::client_config(qtalk_mux::tls::load_certs(path)?),
            Trust::Insecure => Ok(qtalk_mux::tls::insecure_client_config()),
            Trust::Hashes(hashes) => {
                qtalk_mux::tls::hash_pinned_client_config(hashes.iter().copied())
            }
        }
    }
}

/// How to reach listening peers: session settings, which certificates to trust, and how long
/// connecting may take.
#[derive(Clone, Debug, Default)]
pub struct Dial {
    /// Session settings.
    pub config: qtalk_mux::Config,
    /// Certificates accepted from TLS and QUIC servers.
    pub trust: Trust,
    /// Deadline for connecting, the TLS, WebSocket or QUIC handshake included, within the
    /// caller's overall deadline; `None`: the overall deadline alone. Over QUIC nothing
    /// answers "refused" (the datagrams go unanswered), so this is how soon a wrong address
    /// is reported.
    pub connect_timeout: Option<Duration>,
    /// The client certificate chain and key files (PEM) presented to TLS and QUIC servers
    /// that ask for one (mutual TLS).
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

impl Dial {
    /// The TLS client settings: [`Dial::trust`], presenting [`Dial::client_certificate`] if
    /// there is one.
    pub fn tls_config(&self) -> io::Result<qtalk_mux::tls::rustls::ClientConfig> {
        let tls = self.trust.client_config()?;
        match &self.client_certificate {
            Some((cert, key)) => qtalk_mux::tls::with_client_certificate(
                tls,
                qtalk_mux::tls::load_certs(cert)?,
                qtalk_mux::tls::load_key(key)?,
            ),
            None => Ok(tls),
        }
    }
}

/// The `--connect-timeout` of `qtalk call`, `check` and `bench` when none is given.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The host part of `host:port` (without IPv6 brackets): the name a certificate must carry.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Connects to a listening peer.
pub async fn connect(endpoint: &Endpoint, dial: &Dial) -> io::Result<qtalk_mux::Session> {
    let config = dial.config.clone();
    match endpoint {
        Endpoint::Quic(addr) => {
            let tls = dial.tls_config()?;
            qtalk_mux::quic::connect(addr.as_str(), host_of(addr), tls, config).await
        }
        Endpoint::Tls(addr) => {
            let tls = dial.tls_config()?;
            qtalk_mux::transport::connect_tls(addr.as_str(), host_of(addr), tls, config).await
        }
        Endpoint::Wss(addr) => {
            let tls = dial.tls_config()?;
            qtalk_mux::transport::connect_wss(&format!("wss://{addr}/"), tls, config).await
        }
        Endpoint::WebTransport(addr) => {
            let tls = dial.trust.client_config()?;
            qtalk_mux::webtransport::connect(&format!("https://{addr}/"), tls, config).await
        }
        Endpoint::Tcp(addr) => qtalk_mux::transport::connect_tcp(addr.as_str(), config).await,
        // The selector is not part of the WebSocket URL: as the reference's DialWS, path `/`.
        Endpoint::Ws(addr) => {
            qtalk_mux::transport::ws::connect_ws(&format!("ws://{addr}/"), config).await
        }
        #[cfg(unix)]
        Endpoint::Unix(path) => qtalk_mux::transport::connect_unix(path, config).await,
        #[cfg(not(unix))]
        Endpoint::Unix(_) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix sockets are not available on this platform",
        )),
    }
}

/// Connects with a deadline (`timeout`, or the shorter [`Dial::connect_timeout`]); failures
/// become one-line [`Failure::Transport`]s naming the endpoint, with a hint when the server's
/// certificate was refused.
pub async fn connect_within(
    endpoint: &Endpoint,
    dial: &Dial,
    timeout: Duration,
) -> Result<qtalk_mux::Session, Failure> {
    let limit = dial.connect_timeout.map_or(timeout, |c| c.min(timeout));
    match tokio::time::timeout(limit, connect(endpoint, dial)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Failure::Transport(format!(
            "cannot connect to {endpoint}: {}{}",
            describe_io(&e),
            certificate_hint(&e.to_string())
        ))),
        Err(_) => Err(Failure::Transport(no_answer(endpoint, limit))),
    }
}

/// Why connecting to `endpoint` did not finish within `limit`.
fn no_answer(endpoint: &Endpoint, limit: Duration) -> String {
    let limit = crate::human_duration(limit);
    match endpoint {
        Endpoint::Quic(addr) => format!(
            "cannot connect to {endpoint}: no QUIC answer from {addr} within {limit} (is a QUIC \
             server listening on UDP there?)"
        ),
        Endpoint::WebTransport(addr) => format!(
            "cannot connect to {endpoint}: no WebTransport answer from {addr} within {limit} \
             (is a WebTransport server listening on UDP there?)"
        ),
        _ => format!("cannot connect to {endpoint}: no answer within {limit}"),
    }
}

/// A hint to append to a connection error whose text `error` says that the server's
/// certificate was refused; empty otherwise.
///
/// ```
/// use qtalk_cli::peer::certificate_hint;
/// assert!(certificate_hint("invalid peer certificate: UnknownIssuer").contains("--insecure"));
/// assert!(certificate_hint("received fatal alert: CertificateRequired").contains("--cert"));
/// assert_eq!(certificate_hint("Connection refused"), "");
/// ```
pub fn certificate_hint(error: &str) -> &'static str {
    // TLS: the alert by name; QUIC: its number (116) and quinn's text.
    if [
        "CertificateRequired",
        "certificate required",
        "peer sent no certificates",
    ]
    .iter()
    .any(|t| error.contains(t))
    {
        " (the server requires a client certificate: pass --cert FILE --key FILE with one \
         issued by a CA it trusts)"
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        " (the server's certificate does not name the host in the URL: connect by a name it \
         carries, or pass --insecure to accept any certificate)"
    } else if error.contains("invalid peer certificate") || error.contains("UnknownIssuer") {
        " (the server's certificate is not trusted: pass --ca FILE with its certificate or CA, \
         or --insecure for a development server with a self-signed certificate)"
    } else {
        ""
    }
}

/// An io error as one short line (the OS text, without the `(os error N)` suffix).
pub fn describe_io(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Starts or connects to the peer described by `spec` (see [`PeerSpec`]).
pub async fn open(spec: &PeerSpec, dial: &Dial, timeout: Duration) -> Result<Connection, Failure> {
    let config = dial.config.clone();
    match spec {
        PeerSpec::Connect(endpoint) => Ok(Connection {
            session: connect_within(endpoint, dial, timeout).await?,
            child: None,
            node: None,
        }),
        PeerSpec::P2p { name, via } => {
            let (node, session) = crate::p2p::connect(name, via, dial, timeout).await?;
            Ok(Connection {
                session: session.into_session(),
                child: None,
                node: Some(node),
            })
        }
        PeerSpec::Command(cmd) => {
            let mut command = Command::new("sh");
            command.arg("-c").arg(cmd);
            spawn(command, config).map_err(|e| {
                Failure::Transport(format!("cannot start `sh -c {cmd}`: {}", describe_io(&e)))
            })
        }
        PeerSpec::SelfInterop => {
            let exe = self_exe().map_err(|e| {
                Failure::Transport(format!(
                    "cannot find this program's path: {}",
                    describe_io(&e)
                ))
            })?;
            let mut command = Command::new(&exe);
            command.arg("interop");
            spawn(command, config).map_err(|e| {
                Failure::Transport(format!(
                    "cannot start `{} interop`: {}",
                    exe.display(),
                    describe_io(&e)
                ))
            })
        }
    }
}

fn self_exe() -> io::Result<PathBuf> {
    std::env::current_exe()
}

fn spawn(mut command: Command, config: qtalk_mux::Config) -> io::Result<Connection> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let session = qtalk_mux::transport::over_child(&mut child, config)?;
    Ok(Connection {
        session,
        child: Some(child),
        node: None,
    })
}

/// A target's selector, or a usage error saying how to name one.
pub fn require_selector(target: &Target) -> Result<&str, Failure> {
    target.selector.as_deref().ok_or_else(|| {
        let hint = match &target.endpoint {
            Endpoint::Unix(_) => format!("{}#Selector", target.endpoint),
            _ => format!("{}/Selector", target.endpoint),
        };
        Failure::Usage(format!("the URL names no selector to call: write {hint}"))
    })
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn certificate_names() {
        assert_eq!(host_of("localhost:9000"), "localhost");
        assert_eq!(host_of("127.0.0.1:9000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9000"), "::1");
    }
}
