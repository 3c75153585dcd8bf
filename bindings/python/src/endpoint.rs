//! The URLs `connect` and `start_server` take.
//!
//! | form | meaning |
//! | --- | --- |
//! | `tcp://HOST:PORT` (or just `HOST:PORT`) | TCP |
//! | `ws://HOST[:PORT][/]` | WebSocket (port 80 by default; the WebSocket path is `/`) |
//! | `unix:///abs/path.sock`, `unix:rel/path.sock` | a Unix socket |
//! | `tls://HOST:PORT` | qmux inside TLS over TCP |
//! | `wss://HOST[:PORT][/]` | WebSocket over TLS (port 443 by default) |
//! | `quic://HOST:PORT` (or `udp://`) | QUIC, one stream per channel |
//!
//! For the last three a client checks the server's certificate (it must name `HOST`) against
//! the system's roots, the roots of a PEM file (`ca=`), or not at all (`insecure=True`); a
//! server needs a certificate and key (`cert=`, `key=`, PEM files).

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use qtalk::mux::{tls, Config, Listener, Session};

/// Where a peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(String),
    Ws(String),
    /// A Unix socket (only where there are Unix sockets).
    Unix(PathBuf),
    Tls(String),
    Wss(String),
    Quic(String),
}

/// Which server certificates a client accepts, and the certificate it presents if any.
#[derive(Clone, Debug, Default)]
pub(crate) struct Trust {
    roots: Roots,
    /// A client certificate and its key (PEM files), for servers that ask for one.
    identity: Option<(PathBuf, PathBuf)>,
}

/// Which server certificates a client accepts.
#[derive(Clone, Debug, Default)]
enum Roots {
    /// The operating system's roots.
    #[default]
    System,
    /// The roots in a PEM file (a private CA, or the server's self-signed certificate).
    Pem(PathBuf),
    /// Any certificate (encrypted, not authenticated; development only).
    Insecure,
}

impl Trust {
    pub(crate) fn new(ca: Option<PathBuf>, insecure: bool) -> PyResult<Trust> {
        let roots = match (ca, insecure) {
            (Some(_), true) => {
                return Err(PyValueError::new_err("give ca= or insecure=True, not both"))
            }
            (Some(path), false) => Roots::Pem(path),
            (None, true) => Roots::Insecure,
            (None, false) => Roots::System,
        };
        Ok(Trust {
            roots,
            identity: None,
        })
    }

    /// Presents `identity` (certificate and key PEM files) to servers that ask.
    pub(crate) fn with_identity(mut self, identity: Option<(PathBuf, PathBuf)>) -> Trust {
        self.identity = identity;
        self
    }

    fn client_config(&self) -> std::io::Result<tls::rustls::ClientConfig> {
        let config = match &self.roots {
            Roots::System => tls::platform_client_config()?,
            Roots::Pem(path) => tls::client_config(tls::load_certs(path)?)?,
            Roots::Insecure => tls::insecure_client_config(),
        };
        match &self.identity {
            None => Ok(config),
            Some((cert, key)) => {
                tls::with_client_certificate(config, tls::load_certs(cert)?, tls::load_key(key)?)
            }
        }
    }
}

/// The host part of `host:port`, without IPv6 brackets: the name a certificate must carry.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn bad(url: &str, why: &str) -> pyo3::PyErr {
    PyValueError::new_err(format!("bad URL {url:?}: {why}"))
}

/// `host:port` with a port, IPv6 hosts in brackets.
fn host_port(url: &str, rest: &str, default_port: Option<u16>) -> PyResult<String> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad(url, "no host"));
    }
    if rest.contains('/') || rest.contains('?') || rest.contains('#') || rest.contains('@') {
        return Err(bad(url, "expected only HOST:PORT after the scheme"));
    }
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return Err(bad(url, "no host"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .map_err(|_| bad(url, "the port is not a number from 0 to 65535"))?,
        (None, Some(p)) => p,
        (None, None) => return Err(bad(url, "no port (expected HOST:PORT)")),
    };
    Ok(format!("{host}:{port}"))
}

/// The error for `unix:` URLs where there are no Unix sockets.
#[cfg(not(unix))]
fn no_unix() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "unix: URLs need Unix sockets, which this platform does not have",
    )
}

impl Endpoint {
    pub(crate) fn parse(url: &str) -> PyResult<Endpoint> {
        if let Some(rest) = url.strip_prefix("tcp://") {
            return Ok(Endpoint::Tcp(host_port(url, rest, None)?));
        }
        if let Some(rest) = url.strip_prefix("ws://") {
            return Ok(Endpoint::Ws(host_port(url, rest, Some(80))?));
        }
        if let Some(rest) = url.strip_prefix("tls://") {
            return Ok(Endpoint::Tls(host_port(url, rest, None)?));
        }
        if let Some(rest) = url.strip_prefix("wss://") {
            return Ok(Endpoint::Wss(host_port(url, rest, Some(443))?));
        }
        if let Some(rest) = url
            .strip_prefix("quic://")
            .or_else(|| url.strip_prefix("udp://"))
        {
            return Ok(Endpoint::Quic(host_port(url, rest, None)?));
        }
        if let Some(rest) = url.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(bad(url, "use unix:///absolute/path or unix:relative/path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(rest)));
        }
        if let Some(rest) = url.strip_prefix("unix:") {
            if rest.is_empty() {
                return Err(bad(url, "no socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(rest)));
        }
        if url.contains("://") {
            return Err(bad(
                url,
                "unsupported scheme (use tcp://, ws://, unix:, tls://, wss:// or quic://)",
            ));
        }
        Ok(Endpoint::Tcp(host_port(url, url, None)?))
    }

    /// True for the schemes that need a certificate to serve.
    pub(crate) fn is_secure(&self) -> bool {
        matches!(
            self,
            Endpoint::Tls(_) | Endpoint::Wss(_) | Endpoint::Quic(_)
        )
    }

    pub(crate) async fn connect(&self, trust: &Trust, config: Config) -> std::io::Result<Session> {
        match self {
            Endpoint::Tls(addr) => {
                let tls = trust.client_config()?;
                qtalk::mux::transport::connect_tls(addr.as_str(), host_of(addr), tls, config).await
            }
            Endpoint::Wss(addr) => {
                let tls = trust.client_config()?;
                qtalk::mux::transport::connect_wss(&format!("wss://{addr}/"), tls, config).await
            }
            Endpoint::Quic(addr) => {
                let tls = trust.client_config()?;
                qtalk::mux::quic::connect(addr.as_str(), host_of(addr), tls, config).await
            }
            Endpoint::Tcp(addr) => qtalk::mux::transport::connect_tcp(addr.as_str(), config).await,
            Endpoint::Ws(addr) => {
                qtalk::mux::transport::connect_ws(&format!("ws://{addr}/"), config).await
            }
            #[cfg(unix)]
            Endpoint::Unix(path) => qtalk::mux::transport::connect_unix(path, config).await,
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(no_unix()),
        }
    }

    /// Binds a listener (with `identity`, a certificate and key in PEM files, for the secure
    /// schemes); returns it with the URL it is reached at.
    pub(crate) async fn bind(
        &self,
        identity: Option<&(PathBuf, PathBuf)>,
        client_ca: Option<&PathBuf>,
        config: Config,
    ) -> std::io::Result<(Listener, String)> {
        let server_tls = || -> std::io::Result<tls::rustls::ServerConfig> {
            let (cert, key) = identity.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a tls://, wss:// or quic:// server needs cert= and key= (PEM files)",
                )
            })?;
            match client_ca {
                None => tls::server_config(tls::load_certs(cert)?, tls::load_key(key)?),
                Some(ca) => tls::server_config_with_client_auth(
                    tls::load_certs(cert)?,
                    tls::load_key(key)?,
                    tls::load_certs(ca)?,
                ),
            }
        };
        match self {
            Endpoint::Tls(addr) => {
                let l = Listener::bind_tls(addr.as_str(), server_tls()?, config).await?;
                let url = format!("tls://{}", l.local_addr()?);
                Ok((l, url))
            }
            Endpoint::Wss(addr) => {
                let l = Listener::bind_wss(addr.as_str(), server_tls()?, config).await?;
                let url = format!("wss://{}", l.local_addr()?);
                Ok((l, url))
            }
            Endpoint::Quic(addr) => {
                let l = Listener::bind_quic(addr.as_str(), server_tls()?, config).await?;
                let url = format!("quic://{}", l.local_addr()?);
                Ok((l, url))
            }
            Endpoint::Tcp(addr) => {
                let l = Listener::bind_tcp(addr.as_str(), config).await?;
                let url = format!("tcp://{}", l.local_addr()?);
                Ok((l, url))
            }
            Endpoint::Ws(addr) => {
                let l = Listener::bind_ws(addr.as_str(), config).await?;
                let url = format!("ws://{}", l.local_addr()?);
                Ok((l, url))
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(no_unix()),
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                let l = Listener::bind_unix(path, config)?;
                let p = path.to_string_lossy();
                let url = if p.starts_with('/') {
                    format!("unix://{p}")
                } else {
                    format!("unix:{p}")
                };
                Ok((l, url))
            }
        }
    }
}
