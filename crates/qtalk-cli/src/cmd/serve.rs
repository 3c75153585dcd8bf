//! `qtalk interop`: the interop service on stdio or on a listener.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use qtalk::codec::Codec;
use qtalk::rpc::{Handler, Options, Server};
use qtalk_cli::interop::{self, Faults};
use qtalk_cli::peer;
use qtalk_cli::url::Endpoint;
use qtalk_cli::Failure;

use super::args::InteropArgs;
use super::p2p::serve_p2p;
use super::parse_url;

pub(crate) async fn interop_cmd(a: InteropArgs, faults: Faults) -> Result<(), Failure> {
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
            let tls = TlsSettings {
                identity: a.cert.zip(a.key),
                client_ca: a.client_ca,
            };
            listen(target.endpoint, tls, codec).await
        }
    }
}

/// Maps how a stdio session ended to the interop's result.
pub(crate) fn session_end(end: qtalk_mux::Error) -> Result<(), Failure> {
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

/// What a secure listener presents, and whom it lets in.
struct TlsSettings {
    /// The certificate chain and key files; `None`: a self-signed certificate.
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// `--client-ca`: clients must present a certificate issued by one of these.
    client_ca: Option<std::path::PathBuf>,
}

/// The TLS settings of a secure listener: the given certificate and key, or a fresh self-signed
/// certificate for localhost and `host`; requiring client certificates with `--client-ca`.
/// Also says whether the certificate was made up here.
fn server_tls(
    settings: &TlsSettings,
    host: &str,
) -> std::io::Result<(qtalk_mux::tls::rustls::ServerConfig, bool)> {
    let (certs, key, generated) = match &settings.identity {
        Some((cert, key)) => (
            qtalk_mux::tls::load_certs(cert)?,
            qtalk_mux::tls::load_key(key)?,
            false,
        ),
        None => {
            let mut names = vec!["localhost", "127.0.0.1", "::1"];
            if !names.contains(&host) && !host.is_empty() {
                names.push(host);
            }
            let id = qtalk_mux::tls::self_signed(&names)?;
            (id.certs, id.key, true)
        }
    };
    let tls = match &settings.client_ca {
        Some(ca) => qtalk_mux::tls::server_config_with_client_auth(
            certs,
            key,
            qtalk_mux::tls::load_certs(ca)?,
        )?,
        None => qtalk_mux::tls::server_config(certs, key)?,
    };
    Ok((tls, generated))
}

/// The interop service for every session of a listener (or of a P2P node): an rpc
/// [`Server`] whose handlers are made per session, so that a session whose peer breaks the
/// protocol is closed with one warning, alone. `ended` is set when a session ends.
pub(crate) fn interop_server(codec: Arc<dyn Codec>, ended: Arc<AtomicBool>) -> Server {
    let options = Options::builder()
        .on_bad_call(|bad| {
            tracing::warn!(
                "closing a session: peer broke the protocol: {} (call header on channel {})",
                bad.error(),
                bad.channel()
            );
            bad.session().close();
        })
        .build()
        .unwrap_or_default();
    let make = move |session: &qtalk_mux::Session| {
        let faults = Faults::new();
        let session = session.clone();
        let watched = faults.clone();
        let ended = ended.clone();
        tokio::spawn(async move {
            tokio::select! {
                end = session.wait() => {
                    if let Err(f) = session_end(end) {
                        tracing::warn!("session ended: {}", f.message());
                    }
                }
                fault = watched.wait() => {
                    tracing::warn!("closing a session: peer broke the protocol: {fault}");
                    session.close();
                }
            }
            ended.store(true, Ordering::Relaxed);
        });
        Arc::new(interop::service(faults)) as Arc<dyn Handler>
    };
    Server::per_session(make, codec, options)
}

async fn listen(
    endpoint: Endpoint,
    tls: TlsSettings,
    codec: Arc<dyn Codec>,
) -> Result<(), Failure> {
    let config = qtalk_mux::Config::default();
    let secure = matches!(
        endpoint,
        Endpoint::Quic(_) | Endpoint::Tls(_) | Endpoint::Wss(_) | Endpoint::WebTransport(_)
    );
    if (tls.identity.is_some() || tls.client_ca.is_some()) && !secure {
        return Err(Failure::Usage(
            "--cert, --key and --client-ca apply to tls://, wss://, quic:// and https:// \
             listeners only"
                .into(),
        ));
    }
    // The TLS settings of a secure listener, and whether the certificate was made up here.
    let tls_for = |addr: &str| {
        server_tls(&tls, peer::host_of(addr))
            .map_err(|e| Failure::Usage(format!("cannot set up TLS: {e}")))
    };
    let mut self_signed = false;
    let mut webtransport = None;
    let bound = match &endpoint {
        Endpoint::WebTransport(_) if tls.client_ca.is_some() => {
            // Browsers present no client certificate to a WebTransport server.
            return Err(Failure::Usage(
                "--client-ca applies to tls://, wss:// and quic:// listeners only".into(),
            ));
        }
        Endpoint::WebTransport(addr) => {
            let cert = qtalk_cli::certs::webtransport(tls.identity.clone(), peer::host_of(addr))
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
    if tls.client_ca.is_some() {
        eprintln!("requiring client certificates issued by --client-ca");
    }
    // glibc keeps what ended sessions freed (a hostile peer can make one hold its whole
    // budget); once a second after a session ended, it is given back.
    let ended = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let ended = ended.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if ended.swap(false, Ordering::Relaxed) {
                    release_freed_memory();
                }
            }
        }
    });
    let server = interop_server(codec, ended);
    tokio::select! {
        served = server.serve(listener) => served.map_err(|e| {
            Failure::Transport(format!("accepting on {shown}: {}", peer::describe_io(&e)))
        }),
        _ = shutdown_signal() => {
            if let Some(path) = cleanup {
                let _ = std::fs::remove_file(path);
            }
            // Calls in flight may finish (new ones are refused), briefly.
            server.shutdown(SHUTDOWN_GRACE).await;
            Ok(())
        }
    }
}

/// How long calls in flight may go on after a signal asked `interop --listen` to stop.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Returns memory the allocator keeps after sessions ended to the system. glibc's malloc
/// keeps freed heap memory for reuse (arenas shrink only from the top), so after a peer made a
/// session hold its budget, RSS stayed there; `malloc_trim` releases it. Elsewhere a no-op.
#[allow(unsafe_code)]
pub(crate) fn release_freed_memory() {
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

pub(crate) async fn shutdown_signal() {
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
