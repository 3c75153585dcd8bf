//! The URLs `connect` and `start_server` take.
//!
//! | form | meaning |
//! | --- | --- |
//! | `tcp://HOST:PORT` (or just `HOST:PORT`) | TCP |
//! | `ws://HOST[:PORT][/]` | WebSocket (port 80 by default; the WebSocket path is `/`) |
//! | `unix:///abs/path.sock`, `unix:rel/path.sock` | a Unix socket |

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use qtalk::mux::{Config, Listener, Session};

/// Where a peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(String),
    Ws(String),
    Unix(PathBuf),
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

impl Endpoint {
    pub(crate) fn parse(url: &str) -> PyResult<Endpoint> {
        if let Some(rest) = url.strip_prefix("tcp://") {
            return Ok(Endpoint::Tcp(host_port(url, rest, None)?));
        }
        if let Some(rest) = url.strip_prefix("ws://") {
            return Ok(Endpoint::Ws(host_port(url, rest, Some(80))?));
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
            return Err(bad(url, "unsupported scheme (use tcp://, ws:// or unix:)"));
        }
        Ok(Endpoint::Tcp(host_port(url, url, None)?))
    }

    pub(crate) async fn connect(&self) -> std::io::Result<Session> {
        let config = Config::default();
        match self {
            Endpoint::Tcp(addr) => qtalk::mux::transport::connect_tcp(addr.as_str(), config).await,
            Endpoint::Ws(addr) => {
                qtalk::mux::transport::connect_ws(&format!("ws://{addr}/"), config).await
            }
            Endpoint::Unix(path) => qtalk::mux::transport::connect_unix(path, config).await,
        }
    }

    /// Binds a listener; returns it with the URL it is reached at.
    pub(crate) async fn bind(&self) -> std::io::Result<(Listener, String)> {
        let config = Config::default();
        match self {
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

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn parses() {
        let tcp = |s: &str| Endpoint::Tcp(s.into());
        assert_eq!(
            Endpoint::parse("tcp://127.0.0.1:9").unwrap(),
            tcp("127.0.0.1:9")
        );
        assert_eq!(Endpoint::parse("tcp://[::1]:9/").unwrap(), tcp("[::1]:9"));
        assert_eq!(Endpoint::parse("localhost:9").unwrap(), tcp("localhost:9"));
        assert_eq!(
            Endpoint::parse("ws://h").unwrap(),
            Endpoint::Ws("h:80".into())
        );
        assert_eq!(
            Endpoint::parse("unix:///tmp/s").unwrap(),
            Endpoint::Unix("/tmp/s".into())
        );
        assert_eq!(
            Endpoint::parse("unix:s").unwrap(),
            Endpoint::Unix("s".into())
        );
        for bad in [
            "tcp://h",
            "tcp://:9",
            "tcp://h:x",
            "quic://h:1",
            "unix:",
            "tcp://h:1/x",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
