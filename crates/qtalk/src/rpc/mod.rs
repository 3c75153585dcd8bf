//! RPC over qmux: every call gets its own channel.
//!
//! On the wire (identical to qtalk-go): the caller opens a channel and sends a [`CallHeader`]
//! and the arguments as one value; the responder answers with a [`ResponseHeader`] and at
//! least one value. Without `Continue` the responder then closes the channel; with it, the
//! channel stays open for more values or raw bytes in both directions. Each value is one rpc
//! frame (4-byte big-endian length, then the codec's bytes). A call may carry metadata and a
//! deadline in optional header fields that the reference ignores (PROTOCOL.md, section 3.12).
//!
//! - Calling: [`Caller`] (`call`, `call_with`, `call_raw`, `request`), [`Request`],
//!   [`Response`]; per-call metadata and deadline in a [`CallContext`].
//! - Responding: the [`Handler`] trait, receiving a [`Responder`] and a [`Call`] (which knows
//!   its [`CallContext`] and its connection); [`handler_fn`] and [`func`] turn closures into
//!   handlers; [`RespondMux`] routes selectors.
//! - Middleware: handlers and callers are tower services ([`HandlerService`],
//!   [`ServiceHandler`], [`Outgoing`]); ready-made layers in [`layer`] (authentication,
//!   metrics, client metadata and deadlines).
//! - Running: [`Peer`] (one session that calls and responds) and [`Server`] (serves a
//!   listener), both with [`Options`] checked by [`OptionsBuilder`].
//! - Testing handlers in memory, without a session: [`testing`].
//! - Callbacks passed as values: [`Callback`] (`{"$fnptr": "<id>"}`).

mod args;
mod call;
mod callback;
mod caller;
mod context;
mod error;
mod frame;
mod handler;
mod io;
pub mod layer;
mod options;
mod peer;
mod respond_mux;
mod responder;
mod serve;
mod server;
mod service;
pub mod testing;

use serde::{Deserialize, Serialize};

pub use args::Params;
pub use call::{Call, Cancelled};
pub use callback::Callback;
pub use caller::{Caller, Request, Response, ResponseReader, ResponseWriter};
pub use context::{CallContext, Metadata};
pub use error::{Error, DEADLINE_EXCEEDED, SHUTTING_DOWN};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use frame::fuzz_read_frames;
pub use frame::{encode_frame, DEFAULT_MAX_FRAME};
pub use handler::{func, handler_fn, proxy_handler, BoxFuture, Handler, HandlerFn};
pub use options::{
    BadCall, BadCallHook, Options, OptionsBuilder, OptionsError, DEFAULT_MAX_CALLS,
    DEFAULT_MAX_METADATA, DEFAULT_MAX_SESSIONS,
};
pub use peer::Peer;
pub use respond_mux::{clean_selector, MuxError, RespondMux};
pub use responder::{Continued, Outcome, Responder};
pub use server::Server;
pub use service::{HandlerFuture, HandlerService, Incoming, Outgoing, ServiceHandler};

/// First value of every call: which handler the caller wants, and optionally the call's
/// metadata (`Meta`) and deadline (`Deadline`, milliseconds left).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallHeader {
    #[serde(rename = "Selector", alias = "selector")]
    pub(crate) selector: String,
    #[serde(
        rename = "Meta",
        alias = "meta",
        default,
        skip_serializing_if = "Metadata::is_empty"
    )]
    pub(crate) meta: Metadata,
    #[serde(
        rename = "Deadline",
        alias = "deadline",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) deadline: Option<u64>,
}

impl CallHeader {
    /// A header calling `selector`, without metadata or deadline.
    pub fn new(selector: impl Into<String>) -> CallHeader {
        CallHeader {
            selector: selector.into(),
            ..CallHeader::default()
        }
    }

    /// The selector, as sent (before normalization).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The metadata (`Meta`).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// The time the caller gave the call when it sent the header (`Deadline`).
    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.deadline.map(std::time::Duration::from_millis)
    }
}

/// First value of every response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseHeader {
    #[serde(rename = "Error", alias = "error", default)]
    pub(crate) error: Option<String>,
    #[serde(rename = "Continue", alias = "continue", default)]
    pub(crate) continue_: bool,
}

impl ResponseHeader {
    /// The handler's error text, if it failed.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// True when the channel stays open after the reply values.
    pub fn is_continued(&self) -> bool {
        self.continue_
    }

    /// The header as encoded, borrowing the error text.
    pub(crate) fn encoding(error: Option<&str>, continue_: bool) -> ResponseHeaderRef<'_> {
        ResponseHeaderRef { error, continue_ }
    }
}

/// [`ResponseHeader`] borrowing its error text, for encoding.
#[derive(Serialize)]
pub(crate) struct ResponseHeaderRef<'a> {
    #[serde(rename = "Error")]
    error: Option<&'a str>,
    #[serde(rename = "Continue")]
    continue_: bool,
}
