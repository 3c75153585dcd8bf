//! Peers reached by name through a rendezvous: `p2p://NAME[/Selector]` with `--via
//! quic://HOST:PORT`, the `interop --p2p NAME` side, and the `rendezvous` command's service
//! (all on the `qtalk-p2p` crate).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qtalk_p2p::{Node, NodeConfig, P2pSession, PeerIdentity};

use crate::peer::{describe_io, host_of, Dial};
use crate::url::{self, Endpoint};
use crate::Failure;

/// The scheme of names reached through a rendezvous.
pub const SCHEME: &str = "p2p://";

/// A `p2p://NAME[/Selector]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P2pTarget {
    /// The name the peer registered.
    pub name: String,
    /// The selector to call, if any (never empty).
    pub selector: Option<String>,
}

impl std::fmt::Display for P2pTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Some(s) => write!(f, "{SCHEME}{}/{s}", self.name),
            None => write!(f, "{SCHEME}{}", self.name),
        }
    }
}

/// Parses `p2p://NAME[/Selector]`; `Ok(None)` for any other text.
///
/// ```
/// use qtalk_cli::p2p::parse;
/// let t = parse("p2p://peer-b/Upper").unwrap().unwrap();
/// assert_eq!((t.name.as_str(), t.selector.as_deref()), ("peer-b", Some("Upper")));
/// assert_eq!(parse("p2p://peer-b").unwrap().unwrap().selector, None);
/// assert!(parse("tcp://127.0.0.1:1").unwrap().is_none());
/// assert!(parse("p2p:///Upper").is_err());
/// ```
pub fn parse(text: &str) -> Result<Option<P2pTarget>, Failure> {
    let Some(rest) = text.trim().strip_prefix(SCHEME) else {
        return Ok(None);
    };
    let (name, selector) = match rest.split_once('/') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(Failure::Usage(format!(
            "bad URL {text:?}: no name after p2p://"
        )));
    }
    Ok(Some(P2pTarget {
        name: name.to_string(),
        selector: selector.filter(|s| !s.is_empty()).map(str::to_string),
    }))
}

/// Where the rendezvous is: `--via quic://HOST:PORT`, resolved.
pub async fn rendezvous_addr(via: &str) -> Result<(SocketAddr, String), Failure> {
    let target = url::parse(via).map_err(|e| Failure::Usage(e.to_string()))?;
    let Endpoint::Quic(addr) = target.endpoint else {
        return Err(Failure::Usage(format!(
            "--via takes the rendezvous's quic://HOST:PORT, not {via}"
        )));
    };
    let resolved = tokio::net::lookup_host(addr.as_str())
        .await
        .map_err(|e| Failure::Transport(format!("cannot resolve {addr}: {}", describe_io(&e))))?
        .next()
        .ok_or_else(|| Failure::Transport(format!("{addr} resolved to nothing")))?;
    Ok((resolved, host_of(&addr).to_string()))
}

/// A node on the rendezvous at `via` with a fresh identity.
pub async fn node(via: &str, dial: &Dial) -> Result<Node, Failure> {
    let (addr, host) = rendezvous_addr(via).await?;
    let tls = dial
        .trust
        .client_config()
        .map_err(|e| Failure::Usage(format!("cannot set up TLS: {e}")))?;
    let identity = PeerIdentity::generate()
        .map_err(|e| Failure::Transport(format!("cannot make a certificate: {e}")))?;
    let mut config = NodeConfig::default();
    config.session = dial.config.clone();
    let connecting = Node::connect(addr, &host, tls, identity, config);
    let limit = dial.connect_timeout.unwrap_or(Duration::from_secs(10));
    match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(node)) => Ok(node),
        Ok(Err(e)) => Err(Failure::Transport(format!(
            "cannot reach the rendezvous {via}: {e}{}",
            crate::peer::certificate_hint(&e.to_string())
        ))),
        Err(_) => Err(Failure::Transport(format!(
            "cannot reach the rendezvous {via}: no QUIC answer within {}",
            crate::human_duration(limit)
        ))),
    }
}

/// Reaches `name` through the rendezvous at `via`, printing `path: direct` or `path:
/// relayed` (and how long it took) on stderr. The node must outlive the session: a relayed
/// session travels over its rendezvous connection.
pub async fn connect(
    name: &str,
    via: &str,
    dial: &Dial,
    timeout: Duration,
) -> Result<(Node, P2pSession), Failure> {
    let node = node(via, dial).await?;
    let started = Instant::now();
    let session = match tokio::time::timeout(timeout, node.connect_to(name)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Failure::Transport(format!(
                "cannot reach {SCHEME}{name}: {e}"
            )))
        }
        Err(_) => {
            return Err(Failure::Transport(format!(
                "cannot reach {SCHEME}{name}: no session within {}",
                crate::human_duration(timeout)
            )))
        }
    };
    eprintln!(
        "path: {} ({} to {SCHEME}{name}{})",
        session.path(),
        crate::human_duration(started.elapsed()),
        session
            .remote_addr()
            .map(|a| format!(" at {a}"))
            .unwrap_or_default()
    );
    Ok((node, session))
}
