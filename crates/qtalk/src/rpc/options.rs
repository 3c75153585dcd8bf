//! [`Options`]: the limits and timers of callers, responders, peers and servers, built and
//! checked by [`OptionsBuilder`].

use std::sync::Arc;
use std::time::Duration;

use crate::rpc::{Error, DEFAULT_MAX_FRAME};

/// What a malformed call looked like, as [`OptionsBuilder::on_bad_call`] observers see it.
#[derive(Debug)]
#[non_exhaustive]
pub struct BadCall<'a> {
    session: &'a qtalk_mux::Session,
    channel: qtalk_mux::ChannelId,
    error: &'a Error,
}

impl<'a> BadCall<'a> {
    pub(crate) fn new(
        session: &'a qtalk_mux::Session,
        channel: qtalk_mux::ChannelId,
        error: &'a Error,
    ) -> Self {
        BadCall {
            session,
            channel,
            error,
        }
    }

    /// The session the call arrived on (e.g. to close it, or to log its peer).
    pub fn session(&self) -> &'a qtalk_mux::Session {
        self.session
    }

    /// The call's channel.
    pub fn channel(&self) -> qtalk_mux::ChannelId {
        self.channel
    }

    /// Why its header could not be read.
    pub fn error(&self) -> &'a Error {
        self.error
    }
}

/// Called for each call whose header cannot be read (undecodable, oversized, metadata over
/// the limit), once its error answer is queued: closing the session there still delivers it.
pub type BadCallHook = Arc<dyn Fn(&BadCall<'_>) + Send + Sync>;

/// Sessions a [`Server`](crate::rpc::Server) serves at once by default.
pub const DEFAULT_MAX_SESSIONS: usize = 16 * 1024;

/// Calls a [`Server`](crate::rpc::Server) runs at once across all its sessions by default.
pub const DEFAULT_MAX_CALLS: usize = 64 * 1024;

/// Largest metadata of one call accepted by default (8 KiB, counted as
/// [`Metadata::size`](crate::rpc::Metadata::size)), as HTTP/2's usual header list limit.
pub const DEFAULT_MAX_METADATA: usize = 8 * 1024;

/// Limits and timers shared by callers and responders. Always valid: [`Options::default`],
/// or [`Options::builder`], which checks every value.
///
/// ```
/// use std::time::Duration;
/// let options = qtalk::rpc::Options::builder()
///     .max_frame(1 << 20)
///     .header_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(options.max_frame(), 1 << 20);
/// assert!(qtalk::rpc::Options::builder().max_frame(0).build().is_err());
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) max_frame: u32,
    pub(crate) header_timeout: Duration,
    pub(crate) on_bad_call: Option<BadCallHook>,
    pub(crate) args_grace: Duration,
    pub(crate) spare_channels: usize,
    pub(crate) spare_max_age: Duration,
    pub(crate) max_metadata: usize,
    pub(crate) max_sessions: usize,
    pub(crate) max_calls: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_frame: DEFAULT_MAX_FRAME,
            header_timeout: Duration::from_secs(30),
            on_bad_call: None,
            args_grace: Duration::from_secs(2),
            spare_channels: 1,
            spare_max_age: Duration::from_secs(5),
            max_metadata: DEFAULT_MAX_METADATA,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_calls: DEFAULT_MAX_CALLS,
        }
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
            .field("max_metadata", &self.max_metadata)
            .field("max_sessions", &self.max_sessions)
            .field("max_calls", &self.max_calls)
            .finish()
    }
}

impl Options {
    /// A builder starting from the defaults.
    pub fn builder() -> OptionsBuilder {
        OptionsBuilder {
            options: Options::default(),
        }
    }

    /// A builder starting from these options.
    pub fn to_builder(&self) -> OptionsBuilder {
        OptionsBuilder {
            options: self.clone(),
        }
    }

    /// Largest rpc frame accepted (default [`DEFAULT_MAX_FRAME`], 4 MiB).
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// How long a responder waits for a call header on a new channel (default 30 s).
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// How long a call answered before its arguments were read keeps its channel open for
    /// them (default 2 s).
    pub fn args_grace(&self) -> Duration {
        self.args_grace
    }

    /// Channels a caller keeps opened ahead of its calls (default 1).
    pub fn spare_channels(&self) -> usize {
        self.spare_channels
    }

    /// Oldest spare channel a call uses (default 5 s).
    pub fn spare_max_age(&self) -> Duration {
        self.spare_max_age
    }

    /// Largest metadata of one call, sent or accepted (default [`DEFAULT_MAX_METADATA`]).
    pub fn max_metadata(&self) -> usize {
        self.max_metadata
    }

    /// Sessions a server serves at once (default [`DEFAULT_MAX_SESSIONS`]).
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// Calls a server runs at once across its sessions (default [`DEFAULT_MAX_CALLS`]).
    pub fn max_calls(&self) -> usize {
        self.max_calls
    }

    /// The observer of malformed calls, if any.
    pub fn on_bad_call(&self) -> Option<&BadCallHook> {
        self.on_bad_call.as_ref()
    }
}

/// A value [`OptionsBuilder::build`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// A limit or timer that must be positive was 0.
    #[error("rpc options: {0} must be at least 1")]
    Zero(&'static str),
    /// The frame limit cannot hold a call header.
    #[error("rpc options: max_frame of {0} bytes cannot hold a call header (at least 64)")]
    FrameTooSmall(u32),
}

/// Builds checked [`Options`]: chain the setters, then [`build`](OptionsBuilder::build).
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until built"]
pub struct OptionsBuilder {
    options: Options,
}

impl OptionsBuilder {
    /// Largest rpc frame accepted (default 4 MiB; at least 64 bytes). A length prefix above it
    /// is refused before anything is allocated for it.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.options.max_frame = bytes;
        self
    }

    /// How long a responder waits for a call header on a new channel (default 30 s; more
    /// than 0). One timer per session times these waits, ticking every half timeout: a wait
    /// ends between the timeout and one and a half times it.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.options.header_timeout = timeout;
        self
    }

    /// How long a call answered before its arguments were read keeps its channel open for
    /// them (default 2 s): callers write the header and the arguments separately, and would
    /// fail to send the arguments, and miss the answer, were the channel closed before.
    pub fn args_grace(mut self, grace: Duration) -> Self {
        self.options.args_grace = grace;
        self
    }

    /// Channels a caller keeps opened ahead of its calls (default 1), so that a call over qmux
    /// takes one round trip instead of two (open, then call): each call takes a spare channel
    /// if one is ready, and opens the next spare alongside. 0 turns this off. Not used over
    /// QUIC, where opening takes no round trip. Each spare is a channel the peer accepted and
    /// waits on for a call header.
    pub fn spare_channels(mut self, n: usize) -> Self {
        self.options.spare_channels = n;
        self
    }

    /// Oldest spare channel a call uses (default 5 s); older ones are closed instead. Keep it
    /// below the peer's header timeout (30 s on ours; qtalk-go has none), or the peer may
    /// close a spare just as a call goes out on it.
    pub fn spare_max_age(mut self, age: Duration) -> Self {
        self.options.spare_max_age = age;
        self
    }

    /// Largest metadata of one call (default 8 KiB, counted as
    /// [`Metadata::size`](crate::rpc::Metadata::size)): a responder answers a call over it
    /// with an error without running a handler; a caller refuses to send one.
    pub fn max_metadata(mut self, bytes: usize) -> Self {
        self.options.max_metadata = bytes;
        self
    }

    /// Sessions a server serves at once (default 16 Ki; at least 1); at the limit it stops
    /// accepting connections until a session ends.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.options.max_sessions = sessions;
        self
    }

    /// Calls a server runs at once across all its sessions (default 64 Ki; at least 1); at
    /// the limit new calls wait unaccepted until one ends.
    pub fn max_calls(mut self, calls: usize) -> Self {
        self.options.max_calls = calls;
        self
    }

    /// Observes malformed calls (default none), e.g. to close a session that is fed garbage.
    pub fn on_bad_call(mut self, hook: impl Fn(&BadCall<'_>) + Send + Sync + 'static) -> Self {
        self.options.on_bad_call = Some(Arc::new(hook));
        self
    }

    /// The options, once every value is checked.
    pub fn build(self) -> Result<Options, OptionsError> {
        let o = self.options;
        if o.max_frame < 64 {
            return Err(OptionsError::FrameTooSmall(o.max_frame));
        }
        if o.header_timeout.is_zero() {
            return Err(OptionsError::Zero("header_timeout"));
        }
        if o.max_sessions == 0 {
            return Err(OptionsError::Zero("max_sessions"));
        }
        if o.max_calls == 0 {
            return Err(OptionsError::Zero("max_calls"));
        }
        Ok(o)
    }
}
