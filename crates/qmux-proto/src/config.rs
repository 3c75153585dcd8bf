//! The protocol core's tunables: [`Config`], built and checked by [`ConfigBuilder`].

use crate::frame::{MAX_MAX_PACKET, MIN_MAX_PACKET};

/// Tunables of a session's protocol state. Always valid: made by [`Config::default`] or by
/// [`Config::builder`], which checks every value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub(crate) window: u32,
    pub(crate) max_packet: u32,
    pub(crate) accept_backlog: usize,
    pub(crate) max_channels: usize,
    pub(crate) open_queue: usize,
    pub(crate) memory_budget: usize,
    pub(crate) send_buffer: usize,
    pub(crate) id_reuse_delay: usize,
    pub(crate) alignment_padding: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 4 * 1024 * 1024,
            max_packet: 256 * 1024,
            accept_backlog: 256,
            max_channels: 1024,
            open_queue: 16 * 1024,
            memory_budget: 32 * 1024 * 1024,
            send_buffer: 1024 * 1024,
            id_reuse_delay: 256,
            alignment_padding: true,
        }
    }
}

/// A value [`ConfigBuilder::build`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit that must be at least 1 was 0.
    #[error("qmux config: {0} must be at least 1")]
    Zero(&'static str),
    /// The max packet is outside what the protocol allows.
    #[error("qmux config: max packet {0} is outside 9 ..= 2^31")]
    MaxPacket(u32),
    /// The memory budget cannot hold the send buffer and one window.
    #[error("qmux config: memory budget {budget} is smaller than the send buffer plus one window ({need})")]
    Budget {
        /// The budget given.
        budget: usize,
        /// The least it must be.
        need: usize,
    },
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::default())
    }

    /// Receive window granted to the peer on every channel, in bytes (default 4 MiB).
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Largest DATA payload accepted from the peer, in bytes (default 256 KiB).
    pub fn max_packet(&self) -> u32 {
        self.max_packet
    }

    /// Channels the peer may have opened that the application has not accepted yet; further
    /// OPENs wait unconfirmed (default 256).
    pub fn accept_backlog(&self) -> usize {
        self.accept_backlog
    }

    /// Channels that may hold an id at once, opened by either side (default 1024). Past it,
    /// the peer's OPENs wait unconfirmed and our own opens wait for a free slot.
    pub fn max_channels(&self) -> usize {
        self.max_channels
    }

    /// OPENs from the peer that may wait unconfirmed (default 16384); further OPENs are
    /// refused (OPEN_FAILURE). Each costs a few bytes.
    pub fn open_queue(&self) -> usize {
        self.open_queue
    }

    /// Memory budget of the session, in bytes (default 32 MiB): the receive windows granted on
    /// all channels (what the peer may send and what waits to be read) plus the send buffer. A
    /// channel gets a full window while the budget allows, a smaller one (at least 64 KiB)
    /// when it is short, and [`FLOOR_WINDOW`](crate::FLOOR_WINDOW) once it is spent; short
    /// windows grow back as it frees up.
    pub fn memory_budget(&self) -> usize {
        self.memory_budget
    }

    /// Bytes of frames that may wait for the transport before channel writes are held back
    /// (default 1 MiB).
    pub fn send_buffer(&self) -> usize {
        self.send_buffer
    }

    /// How many other channels must finish their CLOSE handshake before an id freed by one is
    /// given out again (default 256). The reference may still send a DATA frame after its
    /// CLOSE; delaying reuse keeps such a late frame from landing on a new channel. 0 reuses
    /// the lowest free id at once, exactly as the reference allocates.
    pub fn id_reuse_delay(&self) -> usize {
        self.id_reuse_delay
    }

    /// Whether a large payload handed over without a copy (64 KiB or more, see
    /// `Session::send_bytes`) that does not line up with its stream position modulo 64 is
    /// lined up by sending up to 63 WINDOW_ADJUST frames of 0 bytes for its channel (9 bytes
    /// each) ahead of it, rather than by copying it (default on). A zero adjust changes
    /// nothing for the peer (RFC 4254 gives it no meaning; the Go and JavaScript references
    /// ignore it). It pays where the transport copies the buffer itself, as a socket does: the
    /// copy of a lined-up buffer is the faster one. Over TLS or WebSocket, which copy in user
    /// space anyway, turn it off (their transports in `qtalk-mux` do).
    pub fn alignment_padding(&self) -> bool {
        self.alignment_padding
    }

    /// This configuration with [`Config::alignment_padding`] set to `on`.
    pub fn with_alignment_padding(mut self, on: bool) -> Config {
        self.alignment_padding = on;
        self
    }
}

/// Builds a checked [`Config`]: chain the setters, then [`build`](ConfigBuilder::build).
///
/// ```
/// let config = qtalk_mux_proto::Config::builder().window(1 << 20).build().unwrap();
/// assert_eq!(config.window(), 1 << 20);
/// assert!(qtalk_mux_proto::Config::builder().max_packet(4).build().is_err());
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// See [`Config::window`].
    pub fn window(mut self, bytes: u32) -> Self {
        self.0.window = bytes;
        self
    }

    /// See [`Config::max_packet`] (9 ..= 2^31).
    pub fn max_packet(mut self, bytes: u32) -> Self {
        self.0.max_packet = bytes;
        self
    }

    /// See [`Config::accept_backlog`].
    pub fn accept_backlog(mut self, channels: usize) -> Self {
        self.0.accept_backlog = channels;
        self
    }

    /// See [`Config::max_channels`].
    pub fn max_channels(mut self, channels: usize) -> Self {
        self.0.max_channels = channels;
        self
    }

    /// See [`Config::open_queue`].
    pub fn open_queue(mut self, opens: usize) -> Self {
        self.0.open_queue = opens;
        self
    }

    /// See [`Config::memory_budget`].
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.0.memory_budget = bytes;
        self
    }

    /// See [`Config::send_buffer`].
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.0.send_buffer = bytes;
        self
    }

    /// See [`Config::id_reuse_delay`].
    pub fn id_reuse_delay(mut self, channels: usize) -> Self {
        self.0.id_reuse_delay = channels;
        self
    }

    /// See [`Config::alignment_padding`].
    pub fn alignment_padding(mut self, on: bool) -> Self {
        self.0.alignment_padding = on;
        self
    }

    /// The configuration, once every value is checked.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.0;
        if !(MIN_MAX_PACKET..=MAX_MAX_PACKET).contains(&c.max_packet) {
            return Err(ConfigError::MaxPacket(c.max_packet));
        }
        for (name, v) in [
            ("window", c.window as usize),
            ("send buffer", c.send_buffer),
            ("max channels", c.max_channels),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let need = c.send_buffer.saturating_add(c.window as usize);
        if c.memory_budget < need {
            return Err(ConfigError::Budget {
                budget: c.memory_budget,
                need,
            });
        }
        Ok(c)
    }
}
