//! Every timer and limit of the rendezvous and of nodes. Start from `default()` and set the
//! fields to change; the types may grow fields, so they cannot be written as literals.

use std::net::SocketAddr;
use std::time::Duration;

use crate::Error;

/// The rendezvous service's limits.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RendezvousConfig {
    /// Session settings of the connections peers make to the rendezvous (and of the QUIC
    /// transport under them).
    pub session: qtalk_mux::Config,
    /// Most peer connections at once; further handshakes wait (default 1024).
    pub max_sessions: usize,
    /// Most registered names (default 4096).
    pub max_names: usize,
    /// Longest name in bytes (default 64); names are ASCII letters, digits, `.`, `-`, `_`.
    pub max_name_len: usize,
    /// Most local addresses kept per peer (default 8; more are dropped).
    pub max_local_addrs: usize,
    /// Most relays pending or running at once (default 256).
    pub max_relays: usize,
    /// How long an introduction's relay waits for both peers to join (default 30 s).
    pub relay_join_timeout: Duration,
    /// How long the target of a `Connect` has to acknowledge the introduction (default 5 s).
    pub introduce_timeout: Duration,
    /// Largest rpc frame accepted from peers (default 64 KiB).
    pub max_frame: u32,
    /// Time for a peer's QUIC handshake (default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for RendezvousConfig {
    fn default() -> Self {
        RendezvousConfig {
            session: qtalk_mux::Config::default(),
            max_sessions: 1024,
            max_names: 4096,
            max_name_len: 64,
            max_local_addrs: 8,
            max_relays: 256,
            relay_join_timeout: Duration::from_secs(30),
            introduce_timeout: Duration::from_secs(5),
            max_frame: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl RendezvousConfig {
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.max_sessions == 0 || self.max_names == 0 || self.max_relays == 0 {
            return Err(Error::Config(
                "max_sessions, max_names and max_relays must be at least 1",
            ));
        }
        if self.max_name_len == 0 {
            return Err(Error::Config("max_name_len must be at least 1"));
        }
        self.rpc_options()?;
        Ok(())
    }

    /// The rpc options of the rendezvous's sessions.
    pub(crate) fn rpc_options(&self) -> Result<qtalk::rpc::Options, Error> {
        qtalk::rpc::Options::builder()
            .max_frame(self.max_frame)
            .build()
            .map_err(|_| Error::Config("max_frame must be at least 64"))
    }
}

/// A node's timers and limits.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The local address of the node's one UDP socket (default `0.0.0.0:0`).
    pub bind: SocketAddr,
    /// Session settings: of the rendezvous connection, of direct QUIC sessions, and of the
    /// qmux sessions inside relays.
    pub session: qtalk_mux::Config,
    /// How long to try direct connections before falling back to the relay (default 3 s).
    /// Zero skips punching (relay only).
    pub relay_after: Duration,
    /// Longest interval between fresh connection attempts to each candidate address while
    /// punching (default 250 ms; the first ones come at a tenth of it, doubling): a NAT drops
    /// the first packets until the other side's packets opened it, and a fresh attempt is
    /// quicker than QUIC's retransmission back-off.
    pub redial_interval: Duration,
    /// Time for the whole connect (introduction, punching, relay and its TLS handshake)
    /// before giving up (default 15 s).
    pub connect_timeout: Duration,
    /// Most addresses tried per peer (default 8).
    pub max_candidates: usize,
    /// Most introductions handled at once as the target (default 32); more are refused.
    pub max_incoming: usize,
    /// Extra local addresses to announce, besides the one the node finds (its address on the
    /// route to the rendezvous, with the socket's port).
    pub extra_local_addrs: Vec<SocketAddr>,
    /// Announce no local address (default false): for peers that must not reveal their
    /// network.
    pub hide_local_addrs: bool,
    /// Time for another peer's QUIC handshake with this node (default 10 s).
    pub handshake_timeout: Duration,
    /// Most incoming handshakes at once (default 64); further connection attempts are
    /// refused until one ends.
    pub max_handshakes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            bind: (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            session: qtalk_mux::Config::default(),
            relay_after: Duration::from_secs(3),
            redial_interval: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(15),
            max_candidates: 8,
            max_incoming: 32,
            extra_local_addrs: Vec::new(),
            hide_local_addrs: false,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 64,
        }
    }
}

impl NodeConfig {
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.redial_interval.is_zero() {
            return Err(Error::Config("redial_interval must be above zero"));
        }
        if self.max_candidates == 0 || self.max_incoming == 0 {
            return Err(Error::Config(
                "max_candidates and max_incoming must be at least 1",
            ));
        }
        if self.connect_timeout <= self.relay_after {
            return Err(Error::Config("connect_timeout must exceed relay_after"));
        }
        Ok(())
    }
}
