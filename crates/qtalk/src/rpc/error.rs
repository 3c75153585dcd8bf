//! [`Error`]: why a call or a response failed, one kind per cause.

use std::io;
use std::sync::Arc;

use crate::codec::CodecError;

/// Why a call or a response failed.
///
/// Each cause has one kind, whatever the step that met it: a session that ended is
/// [`Error::Session`] whether the call was opening its channel, writing its arguments or
/// reading the answer (see [`Error::is_session_gone`]).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The responder answered with an error (displayed as `remote: <text>`, as in Go).
    #[error("remote: {0}")]
    Remote(String),
    /// The session is gone: closed by this side or the peer, lost, or ended by a protocol
    /// error. No call can be made or finished on it.
    #[error(transparent)]
    Session(qtalk_mux::Error),
    /// The peer refused the call's channel (qmux `OPEN_FAILURE`, e.g. at its channel limit).
    #[error("rpc: the peer refused the call's channel")]
    Refused,
    /// Reading or writing the call's channel failed while the session lives on (e.g. the peer
    /// closed this one channel).
    #[error("rpc: {0}")]
    Io(Arc<io::Error>),
    /// A value could not be encoded or decoded.
    #[error("rpc: {0}")]
    Codec(#[from] CodecError),
    /// An rpc frame's length prefix exceeds the configured maximum.
    #[error("rpc: frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A call's metadata exceeds the configured maximum
    /// ([`Options::max_metadata`](crate::rpc::Options::max_metadata)), counted as
    /// [`Metadata::size`](crate::rpc::Metadata::size).
    #[error("rpc: metadata of {size} bytes exceeds the limit of {max}")]
    MetadataTooLarge {
        /// The metadata's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The channel ended before a complete header or value arrived.
    #[error("rpc: channel closed before the expected value")]
    Truncated,
    /// Positional parameters did not match the function's arity (reference wording).
    #[error("fn: expected {expected} params, got {got}")]
    Params {
        /// Parameters the function takes.
        expected: usize,
        /// Parameters the call carried.
        got: usize,
    },
    /// The response was already sent.
    #[error("rpc: already responded")]
    AlreadyResponded,
    /// The call's deadline passed (its channel was closed, so the responder sees the call
    /// abandoned), or the peer did not confirm its channel in time.
    #[error("rpc: call timed out")]
    Timeout,
}

impl From<qtalk_mux::Error> for Error {
    fn from(e: qtalk_mux::Error) -> Self {
        match e {
            qtalk_mux::Error::OpenRefused => Error::Refused,
            qtalk_mux::Error::Timeout => Error::Timeout,
            other => Error::Session(other),
        }
    }
}

impl From<io::Error> for Error {
    /// A channel error that carries the session's end (qmux puts it inside the
    /// `io::Error`; QUIC reports a lost connection) is [`Error::Session`]; any other is
    /// [`Error::Io`].
    fn from(e: io::Error) -> Self {
        if e.get_ref()
            .is_some_and(|inner| inner.is::<qtalk_mux::Error>())
        {
            if let Some(Ok(mux)) = e.into_inner().map(|b| b.downcast::<qtalk_mux::Error>()) {
                return Error::Session(*mux);
            }
            unreachable!("checked above");
        }
        #[cfg(feature = "quic")]
        if let Some(lost) = quic_session_end(&e) {
            return Error::Session(lost);
        }
        Error::Io(Arc::new(e))
    }
}

/// The session end a QUIC stream error reports (its connection was lost or closed).
#[cfg(feature = "quic")]
fn quic_session_end(e: &io::Error) -> Option<qtalk_mux::Error> {
    use qtalk_mux::quic::quinn::{ConnectionError, ReadError, WriteError};
    let inner = e.get_ref()?;
    let conn = if let Some(ReadError::ConnectionLost(c)) = inner.downcast_ref::<ReadError>() {
        c
    } else if let Some(WriteError::ConnectionLost(c)) = inner.downcast_ref::<WriteError>() {
        c
    } else {
        inner.downcast_ref::<ConnectionError>()?
    };
    Some(match conn {
        ConnectionError::LocallyClosed => qtalk_mux::Error::Closed,
        ConnectionError::ApplicationClosed(_) => qtalk_mux::Error::PeerClosed,
        other => qtalk_mux::Error::Io(Arc::new(io::Error::new(e.kind(), other.clone()))),
    })
}

impl Error {
    /// The remote error text, when the responder reported one.
    pub fn remote_message(&self) -> Option<&str> {
        match self {
            Error::Remote(m) => Some(m),
            _ => None,
        }
    }

    /// True when the session is gone ([`Error::Session`]): retrying needs a new session.
    pub fn is_session_gone(&self) -> bool {
        matches!(self, Error::Session(_))
    }

    /// True when the responder refused the call because it is shutting down (see
    /// [`Server::shutdown`](crate::rpc::Server::shutdown)): the call never ran, and another
    /// server may take it.
    pub fn is_shutting_down(&self) -> bool {
        self.remote_message() == Some(SHUTTING_DOWN)
    }
}

/// The remote error text of a call that arrived while its server or peer was shutting down
/// (it never ran).
pub const SHUTTING_DOWN: &str = "unavailable: shutting down";

/// The remote error text of a call whose handler ended without answering after the call's
/// deadline passed (instead of the `null` answer of a handler that returned nothing). A caller
/// of this crate reports it, like any failure that arrives once its deadline passed, as
/// [`Error::Timeout`].
pub const DEADLINE_EXCEEDED: &str = "deadline exceeded";
