//! The values of the rendezvous calls (see PROTOCOL.md). Every call takes one positional
//! parameter, an object; unknown fields are ignored so that later versions can add some.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Fingerprint;

/// Peer → rendezvous: claim a name.
pub const REGISTER: &str = "Register";
/// Peer → rendezvous: ask to be introduced to the peer registered under a name.
pub const CONNECT: &str = "Connect";
/// Peer → rendezvous: join the relay of an introduction (answered by continuing into a raw
/// byte stream once both peers joined).
pub const RELAY: &str = "Relay";
/// Anyone → rendezvous: the counters.
pub const STATS: &str = "Stats";
/// Rendezvous → registered peer: someone asked for you; punch now.
pub const INCOMING: &str = "Incoming";

/// The first message on the stream that selects a punched connection (dialer → acceptor).
pub(crate) const SELECT: &[u8] = b"qtalk-p2p/1 select";
/// The acceptor's answer on that stream.
pub(crate) const SELECTED: &[u8] = b"qtalk-p2p/1 selected";

/// `Register` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Register {
    /// The name to claim.
    pub name: String,
    /// The fingerprint of the certificate presented on this connection.
    pub fingerprint: Fingerprint,
    /// Addresses of the peer's own socket on its local networks.
    #[serde(default)]
    pub local_addrs: Vec<SocketAddr>,
}

/// `Register` reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The peer's address as the rendezvous sees it.
    pub public_addr: SocketAddr,
}

/// `Connect` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Connect {
    /// Whom to reach.
    pub name: String,
    /// The asking peer's local addresses.
    #[serde(default)]
    pub local_addrs: Vec<SocketAddr>,
}

/// One side of an introduction: the `Connect` reply (describing the target) and the
/// `Incoming` parameter (describing the asking peer).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Introduction {
    /// The other peer's registered name (empty when it registered none).
    pub name: String,
    /// The fingerprint of the certificate the other peer presented to the rendezvous.
    pub fingerprint: Fingerprint,
    /// The other peer's address as the rendezvous sees it.
    pub public_addr: SocketAddr,
    /// The other peer's local addresses, as it reported them.
    #[serde(default)]
    pub local_addrs: Vec<SocketAddr>,
    /// The relay id of this introduction (32 hex digits).
    pub relay: String,
}

/// `Relay` parameters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Relay {
    /// The relay id of the introduction.
    pub relay: String,
}
