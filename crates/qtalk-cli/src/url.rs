//! The URLs `qtalk` takes: where a peer is, and optionally which selector to call.
//!
//! | form | meaning |
//! | --- | --- |
//! | `tcp://HOST:PORT` | a TCP peer (`HOST` may be a name, an IPv4 address or `[IPv6]`) |
//! | `tcp://HOST:PORT/Selector` | ... and the selector to call (the path after the first `/`) |
//! | `ws://HOST[:PORT]` | a WebSocket peer (port 80 by default); the WebSocket path is always `/` |
//! | `ws://HOST[:PORT]/Selector` | ... and the selector to call |
//! | `tls://HOST:PORT[/Selector]` | qmux inside TLS over TCP (not in the reference) |
//! | `wss://HOST[:PORT][/Selector]` | WebSocket over TLS (port 443 by default) |
//! | `quic://HOST:PORT[/Selector]` | a QUIC peer (UDP); `udp://` means the same, as in the reference |
//! | `unix:///abs/path/to.sock` | a Unix socket peer, absolute path (three slashes) |
//! | `unix:relative/path.sock` | a Unix socket peer, path relative to the working directory |
//! | `unix:///abs/path/to.sock#Selector` | ... and the selector to call (the fragment) |
//!
//! A socket path may itself contain `/`, so for Unix sockets the selector cannot be "the rest
//! of the path": it goes in the URL fragment, after `#`, which is unambiguous (RFC 3986 ends
//! a path at `#`). `tcp://HOST:PORT#Selector` is accepted too. Both path and selector are
//! percent-decoded, so a socket path holding `#` or `%` is written with `%23` or `%25`.
//!
//! For `ws://` the path names the selector, as in the reference's `qtalk call`: like the
//! reference's `mux.DialWS`, the WebSocket itself is always opened at path `/`.
//!
//! For `tls://`, `wss://` and `quic://` the server's certificate must name `HOST`.

use std::fmt;
use std::path::PathBuf;

/// Where a peer is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address, `host:port` (IPv6 hosts keep their brackets).
    Tcp(String),
    /// A WebSocket peer at `ws://host:port/` (`host:port` as for [`Endpoint::Tcp`]).
    Ws(String),
    /// A Unix socket path.
    Unix(PathBuf),
    /// A QUIC peer at `host:port` (UDP).
    Quic(String),
    /// A peer speaking qmux inside TLS at `host:port`.
    Tls(String),
    /// A WebSocket-over-TLS peer at `wss://host:port/`.
    Wss(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Ws(addr) => write!(f, "ws://{addr}"),
            Endpoint::Quic(addr) => write!(f, "quic://{addr}"),
            Endpoint::Tls(addr) => write!(f, "tls://{addr}"),
            Endpoint::Wss(addr) => write!(f, "wss://{addr}"),
            Endpoint::Unix(path) if path.is_absolute() => {
                write!(f, "unix://{}", percent_encode(&path.to_string_lossy()))
            }
            Endpoint::Unix(path) => write!(f, "unix:{}", percent_encode(&path.to_string_lossy())),
        }
    }
}

/// A parsed `qtalk` URL: an endpoint and an optional selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where the peer is.
    pub endpoint: Endpoint,
    /// The selector to call, if the URL names one (never empty).
    pub selector: Option<String>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.endpoint, &self.selector) {
            (Endpoint::Unix(_), Some(sel)) => write!(f, "{}#{}", self.endpoint, sel),
            (_, Some(sel)) => {
                write!(f, "{}/{}", self.endpoint, sel)
            }
            (_, None) => write!(f, "{}", self.endpoint),
        }
    }
}

/// Why a URL was refused. Its text is one line, ready to show to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    url: String,
    reason: String,
}

impl UrlError {
    fn new(url: &str, reason: impl Into<String>) -> Self {
        UrlError {
            url: url.to_string(),
            reason: reason.into(),
        }
    }

    /// The reason alone, without the URL.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad URL {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for UrlError {}

const FORMS: &str = "expected tcp://, tls:// or quic://HOST:PORT[/Selector], \
                     ws:// or wss://HOST[:PORT][/Selector], or unix:///path/to.sock[#Selector]";

/// Parses a `qtalk` URL (see the [module documentation](self) for the forms).
///
/// ```
/// use qtalk_cli::url::{parse, Endpoint};
/// let t = parse("tcp://127.0.0.1:9000/Upper").unwrap();
/// assert_eq!(t.endpoint, Endpoint::Tcp("127.0.0.1:9000".into()));
/// assert_eq!(t.selector.as_deref(), Some("Upper"));
///
/// let t = parse("unix:///run/my app/qtalk.sock#users.Join").unwrap();
/// assert_eq!(t.endpoint, Endpoint::Unix("/run/my app/qtalk.sock".into()));
/// assert_eq!(t.selector.as_deref(), Some("users.Join"));
///
/// let t = parse("ws://localhost:8080/Upper").unwrap();
/// assert_eq!(t.endpoint, Endpoint::Ws("localhost:8080".into()));
/// assert_eq!(t.selector.as_deref(), Some("Upper"));
///
/// let t = parse("udp://127.0.0.1:4242/Upper").unwrap();
/// assert_eq!(t.endpoint, Endpoint::Quic("127.0.0.1:4242".into()));
/// assert_eq!(t.to_string(), "quic://127.0.0.1:4242/Upper");
///
/// let t = parse("wss://example.com/Upper").unwrap();
/// assert_eq!(t.endpoint, Endpoint::Wss("example.com:443".into()));
///
/// assert!(parse("http://example.com/x").unwrap_err().to_string().contains("unknown scheme"));
/// ```
pub fn parse(url: &str) -> Result<Target, UrlError> {
    let err = |reason: String| UrlError::new(url, reason);
    if url.is_empty() {
        return Err(err(format!("empty; {FORMS}")));
    }
    if url.chars().any(|c| c.is_control()) {
        return Err(err("contains control characters".into()));
    }
    let Some((scheme, rest)) = url.split_once(':') else {
        return Err(err(format!("no scheme; {FORMS}")));
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(err(format!("no scheme; {FORMS}")));
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    if rest.contains('?') {
        return Err(err("query strings (`?...`) are not supported".into()));
    }
    let fragment = match fragment {
        Some(f) => Some(percent_decode(f).map_err(|e| err(format!("selector: {e}")))?),
        None => None,
    };
    match scheme.to_ascii_lowercase().as_str() {
        "tcp" => parse_host_port(rest, fragment, "tcp", None)
            .map(|(addr, selector)| Target {
                endpoint: Endpoint::Tcp(addr),
                selector,
            })
            .map_err(err),
        "ws" => parse_host_port(rest, fragment, "ws", Some(80))
            .map(|(addr, selector)| Target {
                endpoint: Endpoint::Ws(addr),
                selector,
            })
            .map_err(err),
        "unix" => parse_unix(rest, fragment).map_err(err),
        "wss" => parse_host_port(rest, fragment, "wss", Some(443))
            .map(|(addr, selector)| Target {
                endpoint: Endpoint::Wss(addr),
                selector,
            })
            .map_err(err),
        "tls" => parse_host_port(rest, fragment, "tls", None)
            .map(|(addr, selector)| Target {
                endpoint: Endpoint::Tls(addr),
                selector,
            })
            .map_err(err),
        "quic" | "udp" => parse_host_port(rest, fragment, "quic", None)
            .map(|(addr, selector)| Target {
                endpoint: Endpoint::Quic(addr),
                selector,
            })
            .map_err(err),
        other => Err(err(format!("unknown scheme {other:?}; {FORMS}"))),
    }
}

/// `//HOST:PORT[/Selector]` of a `tcp:` or `ws:` URL: the address `host:port` and the
/// selector. Without `default_port` the port is required.
fn parse_host_port(
    rest: &str,
    fragment: Option<String>,
    scheme: &str,
    default_port: Option<u16>,
) -> Result<(String, Option<String>), String> {
    let Some(rest) = rest.strip_prefix("//") else {
        return Err(format!(
            "a {scheme} URL starts with {scheme}:// (then HOST:PORT)"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err("user info (`user@`) is not supported".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return Err("unclosed `[` in the IPv6 host".into());
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{host:?} is not an IPv6 address"));
        }
        let port = match (after.strip_prefix(':'), default_port) {
            (Some(port), _) => Some(port),
            (None, Some(_)) if after.is_empty() => None,
            _ => return Err(format!("missing port: write {scheme}://[IPV6]:PORT")),
        };
        (format!("[{host}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "an IPv6 host must be in brackets: {scheme}://[::1]:PORT"
                ));
            }
            Some((host, port)) => (host.to_string(), Some(port)),
            None if authority.is_empty() => {
                return Err(format!("missing host and port: write {scheme}://HOST:PORT"))
            }
            None if default_port.is_some() => (authority.to_string(), None),
            None => return Err(format!("missing port: write {scheme}://{authority}:PORT")),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host: write {scheme}://HOST:PORT"));
    }
    let port: u16 = match (port, default_port) {
        (Some(port), _) => match port.parse() {
            Ok(p) => p,
            Err(_) => return Err(format!("{port:?} is not a port number (0-65535)")),
        },
        (None, Some(p)) => p,
        (None, None) => return Err(format!("missing port: write {scheme}://HOST:PORT")),
    };
    let path = match path {
        Some(p) if !p.is_empty() => Some(percent_decode(p).map_err(|e| format!("selector: {e}"))?),
        _ => None,
    };
    let selector = match (path, fragment) {
        (Some(_), Some(f)) if !f.is_empty() => {
            return Err("give the selector either as the path or after `#`, not both".into())
        }
        (Some(p), _) => Some(p),
        (None, f) => f.filter(|f| !f.is_empty()),
    };
    Ok((format!("{host}:{port}"), selector))
}

fn parse_unix(rest: &str, fragment: Option<String>) -> Result<Target, String> {
    let path = if let Some(after) = rest.strip_prefix("//") {
        // unix://AUTHORITY/PATH: the authority must be empty (or `localhost`).
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        if !authority.is_empty() && authority != "localhost" {
            return Err(format!(
                "a unix URL has no host ({authority:?} was read as one): write \
                 unix:///{authority}{path} (three slashes) for an absolute path or \
                 unix:{authority}{path} for a relative one"
            ));
        }
        path
    } else {
        rest
    };
    if path.is_empty() {
        return Err("missing socket path: write unix:///path/to.sock".into());
    }
    let path = percent_decode(path).map_err(|e| format!("path: {e}"))?;
    Ok(Target {
        endpoint: Endpoint::Unix(PathBuf::from(path)),
        selector: fragment.filter(|f| !f.is_empty()),
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return Err("`%` must be followed by two hex digits".into()),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-escapes do not form UTF-8".into())
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Target {
        parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn bad(url: &str) -> String {
        match parse(url) {
            Ok(t) => panic!("{url} parsed as {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tcp_forms() {
        let t = ok("tcp://localhost:9000");
        assert_eq!(t.endpoint, Endpoint::Tcp("localhost:9000".into()));
        assert_eq!(t.selector, None);
        assert_eq!(ok("tcp://localhost:9000/").selector, None);
        assert_eq!(
            ok("tcp://h:1/users/Join").selector.as_deref(),
            Some("users/Join")
        );
        assert_eq!(ok("tcp://h:1#Upper").selector.as_deref(), Some("Upper"));
        assert_eq!(ok("TCP://h:1/a%20b").selector.as_deref(), Some("a b"));
        let t = ok("tcp://[::1]:80/X");
        assert_eq!(t.endpoint, Endpoint::Tcp("[::1]:80".into()));
        assert_eq!(t.to_string(), "tcp://[::1]:80/X");
    }

    #[test]
    fn ws_forms() {
        let t = ok("ws://127.0.0.1:9000/Upper");
        assert_eq!(t.endpoint, Endpoint::Ws("127.0.0.1:9000".into()));
        assert_eq!(t.selector.as_deref(), Some("Upper"));
        assert_eq!(t.to_string(), "ws://127.0.0.1:9000/Upper");
        let t = ok("ws://example.com");
        assert_eq!(t.endpoint, Endpoint::Ws("example.com:80".into()));
        assert_eq!(t.selector, None);
        assert_eq!(
            ok("WS://h/users/Join").selector.as_deref(),
            Some("users/Join")
        );
        assert_eq!(ok("ws://h:1/").selector, None);
        assert_eq!(ok("ws://h:1#Upper").selector.as_deref(), Some("Upper"));
        assert_eq!(ok("ws://[::1]/X").endpoint, Endpoint::Ws("[::1]:80".into()));
        assert_eq!(
            ok("ws://[::1]:81").endpoint,
            Endpoint::Ws("[::1]:81".into())
        );
        assert!(bad("ws://").contains("missing host"));
        assert!(bad("ws://:80/X").contains("missing host"));
        assert!(bad("ws://h:x/X").contains("not a port"));
        assert!(bad("ws://::1/X").contains("brackets"));
        assert!(bad("ws:h:1").contains("ws://"));
        assert!(bad("ws://h:1/A?x=1").contains("query"));
    }

    #[test]
    fn unix_forms() {
        let t = ok("unix:///tmp/a/b.sock#Upper");
        assert_eq!(t.endpoint, Endpoint::Unix("/tmp/a/b.sock".into()));
        assert_eq!(t.selector.as_deref(), Some("Upper"));
        assert_eq!(t.to_string(), "unix:///tmp/a/b.sock#Upper");
        assert_eq!(
            ok("unix:/tmp/x.sock").endpoint,
            Endpoint::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            ok("unix:rel/x.sock#S").endpoint,
            Endpoint::Unix("rel/x.sock".into())
        );
        assert_eq!(
            ok("unix://localhost/tmp/x").endpoint,
            Endpoint::Unix("/tmp/x".into())
        );
        let t = ok("unix:///tmp/we%23ird.sock#A");
        assert_eq!(t.endpoint, Endpoint::Unix("/tmp/we#ird.sock".into()));
        assert_eq!(t.to_string(), "unix:///tmp/we%23ird.sock#A");
        assert_eq!(ok("unix:///tmp/x#").selector, None);
        let t = ok("quic://[::1]:4242/a/b");
        assert_eq!(t.endpoint, Endpoint::Quic("[::1]:4242".into()));
        assert_eq!(t.selector.as_deref(), Some("a/b"));
        assert_eq!(ok("udp://h:1").to_string(), "quic://h:1");
        assert_eq!(ok("tls://h:1/A").to_string(), "tls://h:1/A");
        assert_eq!(ok("wss://h/A").to_string(), "wss://h:443/A");
    }

    #[test]
    fn refused() {
        assert!(bad("").contains("empty"));
        assert!(bad("localhost:9000").contains("unknown scheme"));
        assert!(bad("/tmp/sock").contains("no scheme"));
        assert!(bad("tls://h/x").contains("missing port"));
        assert!(bad("quic://h").contains("missing port: write quic://h:PORT"));
        assert!(bad("http://h/x").contains("unknown scheme"));
        assert!(bad("tcp://h").contains("missing port"));
        assert!(bad("tcp://:80").contains("missing host"));
        assert!(bad("tcp://h:http").contains("not a port"));
        assert!(bad("tcp://h:99999").contains("not a port"));
        assert!(bad("tcp://::1:80").contains("brackets"));
        assert!(bad("tcp:h:80").contains("tcp://"));
        assert!(bad("tcp://h:1/A#B").contains("not both"));
        assert!(bad("tcp://h:1/A?x=1").contains("query"));
        assert!(bad("unix://tmp/x.sock").contains("three slashes"));
        assert!(bad("unix:").contains("missing socket path"));
        assert!(bad("unix:///tmp/%zz").contains("hex"));
    }
}
