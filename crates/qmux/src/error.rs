//! Error types.

use std::io;
use std::sync::Arc;

pub use qtalk_mux_proto::ProtocolError;

/// Why a session ended, or why a session operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke the protocol; the session was ended.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The transport failed.
    #[error("qmux: transport error: {0}")]
    Io(Arc<io::Error>),
    /// The peer closed the transport (end-of-stream between frames).
    #[error("qmux: peer closed the connection")]
    PeerClosed,
    /// This side closed the session.
    #[error("qmux: session closed")]
    Closed,
    /// The peer refused to open a channel.
    #[error("qmux: channel open failed on remote side")]
    OpenRefused,
    /// A deadline passed.
    #[error("qmux: timed out")]
    Timeout,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// The `io::ErrorKind` this error maps to when surfaced through `AsyncRead`/`AsyncWrite`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Io(e) => e.kind(),
            Error::PeerClosed => io::ErrorKind::ConnectionReset,
            Error::Closed => io::ErrorKind::NotConnected,
            Error::OpenRefused => io::ErrorKind::ConnectionRefused,
            Error::Timeout => io::ErrorKind::TimedOut,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.io_kind(), e)
    }
}
