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
    /// The transport panicked in a read, write, flush or shutdown; the session was ended.
    /// The text is the panic's message.
    #[error("qmux: the transport panicked: {0}")]
    TransportPanicked(Arc<str>),
    /// A task using the session panicked (in the session's own tasks, or in an application
    /// task while it held the session's state, a waker that panics, say); the session was
    /// ended, as its state may be half updated. The text is the panic's message.
    #[error("qmux: a session task panicked: {0}")]
    Panicked(Arc<str>),
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
            Error::TransportPanicked(_) | Error::Panicked(_) => io::ErrorKind::Other,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.io_kind(), e)
    }
}
