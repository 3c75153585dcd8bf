//! Errors of the rendezvous and of nodes.

use std::io;

/// Why a rendezvous or node operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Sockets, TLS settings or a handshake failed.
    #[error("p2p: {0}")]
    Io(#[from] io::Error),
    /// A call to the rendezvous failed on the way (not a refusal).
    #[error("p2p: rendezvous: {0}")]
    Rpc(#[from] qtalk::rpc::Error),
    /// The name is registered by another peer.
    #[error("p2p: name taken: {0}")]
    NameTaken(String),
    /// No peer is registered under the name.
    #[error("p2p: unknown name: {0}")]
    UnknownName(String),
    /// The rendezvous refused for another reason (its text).
    #[error("p2p: rendezvous refused: {0}")]
    Refused(String),
    /// Neither a direct connection nor the relay produced a session in time.
    #[error("p2p: no session with {0}: {1}")]
    Unreachable(String, String),
    /// The rendezvous connection is gone.
    #[error("p2p: the rendezvous session ended")]
    RendezvousClosed,
    /// A configuration value is out of range.
    #[error("p2p: config: {0}")]
    Config(&'static str),
}

/// The text prefixes of the rendezvous's refusals (see PROTOCOL.md).
pub(crate) const NAME_TAKEN: &str = "name taken: ";
pub(crate) const UNKNOWN_NAME: &str = "unknown name: ";

impl Error {
    /// Maps the rendezvous's error answers to their variants.
    pub(crate) fn from_rendezvous(e: qtalk::rpc::Error) -> Error {
        match e.remote_message() {
            Some(m) if m.starts_with(NAME_TAKEN) => Error::NameTaken(m[NAME_TAKEN.len()..].into()),
            Some(m) if m.starts_with(UNKNOWN_NAME) => {
                Error::UnknownName(m[UNKNOWN_NAME.len()..].into())
            }
            Some(m) => Error::Refused(m.into()),
            None => Error::Rpc(e),
        }
    }
}
