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
//! | `https://HOST[:PORT][/Selector]` | a WebTransport peer (UDP, port 443 by default), as browsers name it; the session is always opened at path `/` |
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
//! For `https://` too the path names the selector and the WebTransport session is opened at
//! path `/` (a server built on this crate accepts any path).
//!
//! For `tls://`, `wss://`, `quic://` and `https://` the server's certificate must name `HOST`
//! (unless it is pinned by its hash).
//!
//! The `url` crate parses (as the URL standard says: `ws://` and `wss://` host names are
//! lowercased, `.` and `..` path segments resolved, as for `https://`); this module maps the result to an
//! [`Endpoint`] and refuses what none has (user info, queries, a missing port).

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use url::{Host, ParseError, Url};

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
    /// A WebTransport peer at `https://host:port/` (UDP; shown with that `/`, as browsers
    /// write it).
    WebTransport(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Ws(addr) => write!(f, "ws://{addr}"),
            Endpoint::Quic(addr) => write!(f, "quic://{addr}"),
            Endpoint::Tls(addr) => write!(f, "tls://{addr}"),
            Endpoint::Wss(addr) => write!(f, "wss://{addr}"),
            Endpoint::WebTransport(addr) => write!(f, "https://{addr}/"),
            Endpoint::Unix(path) => {
                // Escaped: what would end the path, and `%` itself.
                let path = path.to_string_lossy().replace('%', "%25");
                let path = path.replace('#', "%23").replace('?', "%3F");
                let slashes = if path.starts_with('/') { "//" } else { "" };
                write!(f, "unix:{slashes}{path}")
            }
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
            // Its own form ends with the `/` of a browser's URL.
            (Endpoint::WebTransport(_), Some(sel)) => write!(f, "{}{}", self.endpoint, sel),
            (_, Some(sel)) => write!(f, "{}/{}", self.endpoint, sel),
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
                     ws://, wss:// or https://HOST[:PORT][/Selector], \
                     or unix:///path/to.sock[#Selector]";

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
/// let t = parse("https://localhost:4433/Upper").unwrap();
/// assert_eq!(t.endpoint, Endpoint::WebTransport("localhost:4433".into()));
/// assert_eq!(t.to_string(), "https://localhost:4433/Upper");
///
/// assert!(parse("http://example.com/x").unwrap_err().to_string().contains("unknown scheme"));
/// ```
pub fn parse(text: &str) -> Result<Target, UrlError> {
    parse_target(text).map_err(|reason| UrlError {
        url: text.to_string(),
        reason,
    })
}

fn parse_target(text: &str) -> Result<Target, String> {
    if text.is_empty() {
        return Err(format!("empty; {FORMS}"));
    }
    // The URL standard would silently drop tabs and newlines.
    if text.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    let scheme = match text.split_once(':') {
        Some((s, _)) if s.starts_with(|c: char| c.is_ascii_alphabetic()) => s.to_ascii_lowercase(),
        _ => return Err(format!("no scheme; {FORMS}{}", tcp_hint(text))),
    };
    let (endpoint, default_port): (fn(String) -> Endpoint, _) = match scheme.as_str() {
        "tcp" => (Endpoint::Tcp, None),
        "tls" => (Endpoint::Tls, None),
        "quic" | "udp" => (Endpoint::Quic, None),
        "ws" => (Endpoint::Ws, Some(80)),
        "wss" => (Endpoint::Wss, Some(443)),
        "https" => (Endpoint::WebTransport, Some(443)),
        "unix" => return parse_unix(text),
        other => {
            let hint = tcp_hint(text);
            return Err(format!("unknown scheme {other:?}; {FORMS}{hint}"));
        }
    };
    let after_scheme = &text[scheme.len() + 1..];
    let scheme = if scheme == "udp" { "quic" } else { &scheme };
    // The URL standard reads `ws:h:1` as `ws://h:1`, and `h::1` as a host and a port.
    let Some(rest) = after_scheme.strip_prefix("//") else {
        return Err(format!(
            "a {scheme} URL starts with {scheme}:// (then HOST:PORT)"
        ));
    };
    let authority = rest.split(['/', '#', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("user info (`user@`) is not supported".into());
    }
    // The URL standard takes the host of `ws:///x` from the path.
    if authority.is_empty() {
        return Err(format!("missing host: write {scheme}://HOST:PORT"));
    }
    if !authority.starts_with('[') && authority.matches(':').count() > 1 {
        return Err(format!(
            "an IPv6 host must be in brackets: {scheme}://[::1]:PORT"
        ));
    }
    let url = Url::parse(text).map_err(|e| match e {
        ParseError::EmptyHost => format!("missing host: write {scheme}://HOST:PORT"),
        ParseError::InvalidPort => {
            let port = authority.rsplit_once(':').map_or("", |(_, p)| p);
            format!("{port:?} is not a port number (0-65535)")
        }
        ParseError::IdnaError if !authority.is_ascii() => {
            "non-ASCII host names are not supported: write the host's xn-- (punycode) form".into()
        }
        ParseError::IdnaError => "invalid host name".into(),
        other => other.to_string(),
    })?;
    plain(&url)?;
    // The host of a scheme the URL standard does not know (all but ws and wss) stays
    // percent-encoded.
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) if !host.to_string().is_empty() => decode(&host.to_string())?,
        _ => return Err(format!("missing host: write {scheme}://HOST:PORT")),
    };
    let Some(port) = url.port().or(default_port) else {
        return Err(format!("missing port: write {scheme}://{host}:PORT"));
    };
    let path = match url.path().strip_prefix('/').unwrap_or_default() {
        "" => None,
        p => Some(decode(p).map_err(|e| format!("selector: {e}"))?),
    };
    let selector = match (path, fragment(&url)?) {
        (Some(_), Some(_)) => {
            return Err("give the selector either as the path or after `#`, not both".into())
        }
        (path, fragment) => path.or(fragment),
    };
    Ok(Target {
        endpoint: endpoint(format!("{host}:{port}")),
        selector,
    })
}

/// `unix:///abs/path`, `unix:rel/path` or `unix://localhost/abs/path`, each with `#Selector`.
fn parse_unix(text: &str) -> Result<Target, String> {
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    plain(&url)?;
    match url.host_str() {
        Some(host) if !host.is_empty() && host != "localhost" => {
            let path = url.path();
            return Err(format!(
                "a unix URL has no host ({host:?} was read as one): write unix:///{host}{path} \
                 (three slashes) for an absolute path or unix:{host}{path} for a relative one"
            ));
        }
        _ => {}
    }
    if url.path().is_empty() {
        return Err("missing socket path: write unix:///path/to.sock".into());
    }
    let path = decode(url.path()).map_err(|e| format!("path: {e}"))?;
    Ok(Target {
        endpoint: Endpoint::Unix(PathBuf::from(path)),
        selector: fragment(&url)?,
    })
}

/// Refuses the parts of a URL that no endpoint has: user info and a query.
fn plain(url: &Url) -> Result<(), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user info (`user@`) is not supported".into());
    }
    if url.query().is_some() {
        return Err("query strings (`?...`) are not supported".into());
    }
    Ok(())
}

/// The decoded fragment, `None` when absent or empty.
fn fragment(url: &Url) -> Result<Option<String>, String> {
    match url.fragment() {
        None | Some("") => Ok(None),
        Some(f) => decode(f).map(Some).map_err(|e| format!("selector: {e}")),
    }
}

/// Percent-decodes strictly: a `%` not followed by two hex digits is an error (the URL
/// standard would keep it as it is).
fn decode(s: &str) -> Result<String, String> {
    let escapes_ok = s
        .split('%')
        .skip(1)
        .all(|after| after.len() >= 2 && after.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if !escapes_ok {
        return Err("`%` must be followed by two hex digits".into());
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-escapes do not form UTF-8".into())
}

/// For `HOST:PORT[/Selector]` written without a scheme, the suggestion to write it as a TCP
/// URL; empty otherwise.
fn tcp_hint(text: &str) -> String {
    let tcp = format!("tcp://{text}");
    if text.contains("://") || parse_target(&tcp).is_err() {
        return String::new();
    }
    format!(" (for a TCP peer write {tcp})")
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
        let t = ok("https://[::1]:4433/");
        assert_eq!(t.endpoint, Endpoint::WebTransport("[::1]:4433".into()));
        assert_eq!(t.selector, None);
        assert_eq!(
            ok("HTTPS://Example.COM/A").to_string(),
            "https://example.com:443/A"
        );
        assert_eq!(
            ok("https://h:1/users/Join").selector.as_deref(),
            Some("users/Join")
        );
    }

    #[test]
    fn refused() {
        assert!(bad("").contains("empty"));
        assert!(bad("localhost:9000").contains("unknown scheme"));
        assert!(bad("localhost:9000").ends_with("(for a TCP peer write tcp://localhost:9000)"));
        assert!(bad("127.0.0.1:9999/Upper").ends_with("write tcp://127.0.0.1:9999/Upper)"));
        assert!(bad("[::1]:9000#X").ends_with("write tcp://[::1]:9000#X)"));
        assert!(!bad("/tmp/sock").contains("for a TCP peer"));
        assert!(!bad("http://h:1/x").contains("for a TCP peer"));
        assert!(bad("/tmp/sock").contains("no scheme"));
        assert!(bad("tls://h/x").contains("missing port"));
        assert!(bad("quic://h").contains("missing port: write quic://h:PORT"));
        assert!(bad("http://h/x").contains("unknown scheme"));
        assert!(bad("https://").contains("missing host"));
        assert!(bad("https://h:1/A?x=1").contains("query"));
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
        assert!(bad("tcp://u:p@h:1").contains("user info"));
        assert!(bad("ws:///x").contains("missing host"));
        assert!(bad("ws://bücher.example/x").contains("xn--"));
    }
}
