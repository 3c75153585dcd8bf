//! **qtalk-p2p**: qtalk sessions between machines that cannot accept connections (behind NATs).
//!
//! - A [`Rendezvous`] (a qtalk service over QUIC, on a machine both peers can reach) where a
//!   peer registers a name; it sees each peer's public address (its QUIC connection's remote
//!   address) and the fingerprint of the certificate the peer authenticated with.
//! - A [`Node`] per peer: one UDP socket (one quinn endpoint) for the rendezvous connection,
//!   for dialing and for accepting. [`Node::connect_to`] asks the rendezvous for a name; the
//!   rendezvous tells both peers each other's public and local addresses and fingerprints, and
//!   both punch at once. The peer with the lower fingerprint dials and selects the connection,
//!   so exactly one session results; certificates are pinned to the vouched fingerprints.
//! - If no direct connection came within [`NodeConfig::relay_after`], both peers go through
//!   the rendezvous's relay: a byte stream it forwards, carrying TLS between the peers (same
//!   certificate check) and a qmux session inside.
//!
//! Either way the application gets a [`qtalk_mux::Session`] ([`P2pSession::session`]) and
//! the [`Path`] it took. The wire protocol and the trust model are in `PROTOCOL.md`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), qtalk_p2p::Error> {
//! use qtalk_p2p::{Node, NodeConfig, PeerIdentity, Rendezvous, RendezvousConfig};
//!
//! let rdv_id = qtalk_mux::tls::self_signed(&["localhost"])?;
//! let rdv = Rendezvous::bind(
//!     "127.0.0.1:0".parse().unwrap(),
//!     rdv_id.certs.clone(),
//!     rdv_id.key,
//!     RendezvousConfig::default(),
//! )
//! .await?;
//! let addr = rdv.local_addr()?;
//! let trust = || qtalk_mux::tls::client_config(rdv_id.certs.clone());
//!
//! let b = Node::connect(addr, "localhost", trust()?, PeerIdentity::generate()?, NodeConfig::default()).await?;
//! b.register("b").await?;
//! let a = Node::connect(addr, "localhost", trust()?, PeerIdentity::generate()?, NodeConfig::default()).await?;
//!
//! let (to_b, from_a) = tokio::join!(a.connect_to("b"), b.accept());
//! let (to_b, from_a) = (to_b?, from_a.unwrap());
//! assert_eq!(to_b.path(), qtalk_p2p::Path::Direct);
//! assert_eq!(to_b.peer_fingerprint(), b.fingerprint());
//! assert_eq!(from_a.peer_fingerprint(), a.fingerprint());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod error;
mod identity;
mod node;
mod rendezvous;
pub mod wire;

pub use config::{NodeConfig, RendezvousConfig};
pub use error::Error;
pub use identity::{BadFingerprint, Fingerprint, PeerIdentity, PEER_SERVER_NAME};
pub use node::{Node, P2pSession, Path, VouchedPeer};
pub use rendezvous::{Rendezvous, Stats};

// The README's example compiles as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
