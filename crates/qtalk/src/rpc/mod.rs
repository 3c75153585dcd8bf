//! RPC over qmux: every call gets its own channel.
//!
//! On the wire (identical to qtalk-go): the caller opens a channel and sends a [`CallHeader`]
//! and the arguments as one value; the responder answers with a [`ResponseHeader`] and at
//! least one value. Without `Continue` the responder then closes the channel; with it, the
//! channel stays open for more values or raw bytes in both directions. Each value is one rpc
//! frame (4-byte big-endian length, then the codec's bytes).
//!
//! - Calling: [`Caller`] (`call`, `call_raw`, `request`), [`Request`], [`Response`].
//! - Responding: the [`Handler`] trait, receiving a [`Responder`] and a [`Call`];
//!   [`handler_fn`] and [`func`] turn closures into handlers; [`RespondMux`] routes selectors.
//! - Running: [`Peer`] (one session that calls and responds) and [`Server`] (serves a
//!   listener).
//! - Callbacks passed as values: [`Callback`] (`{"$fnptr": "<id>"}`).

mod args;
mod callback;
mod caller;
mod frame;
mod handler;
mod respond_mux;
mod server;

use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use args::Params;
pub use callback::Callback;
pub use caller::{Caller, Request, Response, ResponseReader, ResponseWriter};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use frame::fuzz_read_frames;
pub use frame::{encode_frame, DEFAULT_MAX_FRAME};
pub use handler::{
    func, handler_fn, proxy_handler, BoxFuture, Call, Continued, Handler, HandlerFn, Responder,
};
pub use respond_mux::{clean_selector, MuxError, RespondMux};
pub use server::{Peer, Server, DEFAULT_MAX_CALLS, DEFAULT_MAX_SESSIONS};

use crate::codec::CodecError;

/// First value of every call: which handler the caller wants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHeader {
    /// The selector, e.g. `"Upper"` or `"/users/Join"`.
    #[serde(rename = "Selector", alias = "selector")]
    pub selector: String,
}

/// First value of every response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseHeader {
    /// The handler's error text, if it failed.
    #[serde(rename = "Error", alias = "error", default)]
    pub error: Option<String>,
    /// True when the channel stays open after the reply values.
    #[serde(rename = "Continue", alias = "continue", default)]
    pub continue_: bool,
}

/// Why a call or a response failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The responder answered with an error (displayed as `remote: <text>`, as in Go).
    #[error("remote: {0}")]
    Remote(String),
    /// The session could not open the call's channel.
    #[error(transparent)]
    Session(#[from] qtalk_mux::Error),
    /// Reading or writing the channel failed.
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
    /// The call did not finish in time (its channel was closed).
    #[error("rpc: call timed out")]
    Timeout,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// The remote error text, when the responder reported one.
    pub fn remote_message(&self) -> Option<&str> {
        match self {
            Error::Remote(m) => Some(m),
            _ => None,
        }
    }
}

/// Called with the channel id and the error when a peer sends a call whose header cannot be
/// read (undecodable or oversized); the call is answered with an error either way.
pub type BadCallHook = Arc<dyn Fn(qtalk_mux::ChannelId, &Error) + Send + Sync>;

/// Tunables shared by callers and responders, set with chained setters:
///
/// ```
/// let options = qtalk::rpc::Options::default()
///     .max_frame(1 << 20)
///     .header_timeout(std::time::Duration::from_secs(5));
/// assert_eq!(options.max_frame, 1 << 20);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    /// Largest rpc frame accepted (default [`DEFAULT_MAX_FRAME`]).
    pub max_frame: u32,
    /// How long a responder waits for a call header on a new channel (default 30 s). One timer
    /// per session times these waits, ticking every half timeout: a wait ends between the
    /// timeout and one and a half times it.
    pub header_timeout: std::time::Duration,
    /// Observer of malformed calls (default none), e.g. to stop a service that is fed garbage.
    pub on_bad_call: Option<BadCallHook>,
    /// How long a call answered before its arguments were read keeps its channel open for
    /// them (default 2 s): callers write the header and the arguments separately, and would
    /// fail to send the arguments, and miss the answer, were the channel closed before.
    pub args_grace: std::time::Duration,
    /// Channels a caller keeps opened ahead of its calls (default 1), so that a call over qmux
    /// takes one round trip instead of two (open, then call): each call takes a spare channel
    /// if one is ready, and opens the next spare alongside. 0 turns this off. Not used over
    /// QUIC, where opening takes no round trip. Each spare is a channel the peer accepted and
    /// waits on for a call header.
    pub spare_channels: usize,
    /// Oldest spare channel a call uses (default 5 s); older ones are closed instead. Keep it
    /// below the peer's header timeout ([`Options::header_timeout`] on ours, 30 s; qtalk-go
    /// has none), or the peer may close a spare just as a call goes out on it.
    pub spare_max_age: std::time::Duration,
}

impl Options {
    /// Sets [`Options::max_frame`].
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`Options::header_timeout`].
    pub fn header_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`Options::args_grace`].
    pub fn args_grace(mut self, grace: std::time::Duration) -> Self {
        self.args_grace = grace;
        self
    }

    /// Sets [`Options::spare_channels`].
    pub fn spare_channels(mut self, n: usize) -> Self {
        self.spare_channels = n;
        self
    }

    /// Sets [`Options::spare_max_age`].
    pub fn spare_max_age(mut self, age: std::time::Duration) -> Self {
        self.spare_max_age = age;
        self
    }

    /// Sets [`Options::on_bad_call`].
    pub fn on_bad_call(
        mut self,
        hook: impl Fn(qtalk_mux::ChannelId, &Error) + Send + Sync + 'static,
    ) -> Self {
        self.on_bad_call = Some(Arc::new(hook));
        self
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("max_frame", &self.max_frame)
            .field("header_timeout", &self.header_timeout)
            .field("on_bad_call", &self.on_bad_call.is_some())
            .field("args_grace", &self.args_grace)
            .field("spare_channels", &self.spare_channels)
            .field("spare_max_age", &self.spare_max_age)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_frame: DEFAULT_MAX_FRAME,
            header_timeout: std::time::Duration::from_secs(30),
            on_bad_call: None,
            args_grace: std::time::Duration::from_secs(2),
            spare_channels: 1,
            spare_max_age: std::time::Duration::from_secs(5),
        }
    }
}
