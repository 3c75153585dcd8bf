//! Session configuration: [`Config`], built and checked by [`ConfigBuilder`].

use std::time::Duration;

pub use qtalk_mux_proto::ConfigError as ProtoConfigError;

/// Tunables of a [`Session`](crate::Session) and of the listeners and transports that make
/// sessions. Always valid: [`Config::default`], or [`Config::builder`], which checks every
/// value.
///
/// ```
/// use std::time::Duration;
/// let config = qtalk_mux::Config::builder()
///     .window(1 << 20)
///     .accept_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// assert_eq!(config.window_size(), 1 << 20);
/// assert!(qtalk_mux::Config::builder().max_packet(1).build().is_err());
/// ```
///
/// The defaults were chosen by benchmark (see the README): a 4 MiB window keeps a single
/// channel at full speed on loopback while bounding what one slow reader can hold; 256 KiB max
/// packet amortizes frame overhead without large per-frame buffers; a 1 MiB send buffer lets the
/// writer batch frames while holding writers back on a slow transport; a 32 MiB memory budget
/// holds eight full windows.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) proto: qtalk_mux_proto::Config,
    pub(crate) accept_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) open_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) listen_backlog: u32,
    pub(crate) read_buffer_idle: Duration,
    pub(crate) write_batch: usize,
    pub(crate) write_offload: usize,
    pub(crate) tcp_notsent_lowat: u32,
    pub(crate) connect_attempt_delay: Duration,
    /// The client sockets QUIC and WebTransport connections are dialed from.
    #[cfg(feature = "quic")]
    pub(crate) quic_endpoint: crate::quic::Endpoint,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            proto: qtalk_mux_proto::Config::default(),
            accept_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            open_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
            keep_alive: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            listen_backlog: 4096,
            read_buffer_idle: Duration::from_secs(1),
            write_batch: 256 * 1024,
            write_offload: 1024 * 1024,
            tcp_notsent_lowat: 16 * 1024,
            connect_attempt_delay: Duration::from_millis(250),
            #[cfg(feature = "quic")]
            quic_endpoint: crate::quic::Endpoint::new(),
        }
    }
}

/// A value [`ConfigBuilder::build`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A protocol setting (window, packet, channel and budget limits).
    #[error(transparent)]
    Proto(#[from] ProtoConfigError),
    /// A limit that must be at least 1 was 0.
    #[error("qmux config: {0} must be at least 1")]
    Zero(&'static str),
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
            proto: qtalk_mux_proto::Config::builder(),
        }
    }

    /// A builder starting from this configuration (to change a few values of a checked one).
    ///
    /// ```
    /// use std::time::Duration;
    /// let base = qtalk_mux::Config::builder().window(1 << 20).build().unwrap();
    /// let quick = base.to_builder().handshake_timeout(Duration::from_secs(2)).build().unwrap();
    /// assert_eq!(quick.window_size(), 1 << 20);
    /// ```
    pub fn to_builder(&self) -> ConfigBuilder {
        let p = &self.proto;
        ConfigBuilder {
            config: self.clone(),
            proto: qtalk_mux_proto::Config::builder()
                .window(p.window())
                .max_packet(p.max_packet())
                .accept_backlog(p.accept_backlog())
                .max_channels(p.max_channels())
                .open_queue(p.open_queue())
                .memory_budget(p.memory_budget())
                .send_buffer(p.send_buffer())
                .id_reuse_delay(p.id_reuse_delay())
                .alignment_padding(p.alignment_padding()),
        }
    }

    /// The receive window granted per channel.
    pub fn window_size(&self) -> u32 {
        self.proto.window()
    }

    /// The max packet advertised per channel.
    pub fn max_packet_size(&self) -> u32 {
        self.proto.max_packet()
    }

    /// The protocol settings (window, packet, channel and budget limits).
    pub fn proto(&self) -> &qtalk_mux_proto::Config {
        &self.proto
    }

    /// The client endpoint QUIC and WebTransport connections made with this configuration
    /// are dialed from (see [`ConfigBuilder::quic_endpoint`]).
    #[cfg(feature = "quic")]
    pub fn quic_endpoint(&self) -> &crate::quic::Endpoint {
        &self.quic_endpoint
    }

    /// This configuration for a transport that copies in user space (TLS, WebSocket):
    /// alignment padding buys nothing there.
    #[cfg(any(feature = "tls", feature = "websocket"))]
    pub(crate) fn copying_transport(mut self) -> Self {
        self.proto = self.proto.with_alignment_padding(false);
        self
    }
}

/// Builds a checked [`Config`]: chain the setters, then [`build`](ConfigBuilder::build).
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until built"]
pub struct ConfigBuilder {
    config: Config,
    proto: qtalk_mux_proto::ConfigBuilder,
}

impl ConfigBuilder {
    /// Receive window granted to the peer on every channel (default 4 MiB; at least 1). Memory
    /// held for a channel whose reader stalls is bounded by this.
    pub fn window(mut self, bytes: u32) -> Self {
        self.proto = self.proto.window(bytes);
        self
    }

    /// Largest DATA payload accepted from the peer (default 256 KiB; 9 ..= 2^31).
    pub fn max_packet(mut self, bytes: u32) -> Self {
        self.proto = self.proto.max_packet(bytes);
        self
    }

    /// Lines up large zero-copy payloads (`Channel::write_bytes` of 64 KiB or more) with
    /// the stream by sending up to 63 WINDOW_ADJUST frames of 0 bytes ahead of them, rather
    /// than copying them (default on; see `qtalk_mux_proto::Config::alignment_padding`). The
    /// TLS and WebSocket transports turn it off for their sessions: they copy in user space
    /// anyway.
    pub fn alignment_padding(mut self, on: bool) -> Self {
        self.proto = self.proto.alignment_padding(on);
        self
    }

    /// Channels opened by the peer and not yet accepted before further OPENs wait unconfirmed
    /// (default 256).
    pub fn accept_backlog(mut self, channels: usize) -> Self {
        self.proto = self.proto.accept_backlog(channels);
        self
    }

    /// Channels that may be open at once on the session, opened by either side (default 1024;
    /// at least 1). Past it the peer's OPENs wait unconfirmed, and
    /// [`Session::open`](crate::Session::open) waits for a slot (in order).
    pub fn max_channels(mut self, channels: usize) -> Self {
        self.proto = self.proto.max_channels(channels);
        self
    }

    /// OPENs from the peer that may wait unconfirmed for a slot or the accept backlog
    /// (default 16384, a few bytes each); further OPENs are refused with OPEN_FAILURE, as are
    /// those still waiting after the accept timeout.
    pub fn open_queue(mut self, opens: usize) -> Self {
        self.proto = self.proto.open_queue(opens);
        self
    }

    /// Memory budget of the session (default 32 MiB; at least the send buffer plus one
    /// window): the receive windows granted on all its channels plus the send buffer.
    /// Channels get a full window while it allows, a smaller one (at least 64 KiB) when it is
    /// short, and 4 KiB ([`FLOOR_WINDOW`](qtalk_mux_proto::FLOOR_WINDOW)) once it is spent;
    /// short windows grow back as reads free it. What the peer can make this session hold is
    /// bounded by the budget plus 4 KiB per channel (at most
    /// [`max_channels`](ConfigBuilder::max_channels)).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.proto = self.proto.memory_budget(bytes);
        self
    }

    /// Bytes of outgoing frames that may wait for the transport before channel writes are held
    /// back (default 1 MiB; at least 1).
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.proto = self.proto.send_buffer(bytes);
        self
    }

    /// How many other channels must finish closing before an id is given out again (default
    /// 256; 0 reuses the lowest free id at once, as the reference does). The delay keeps a
    /// DATA frame the reference may send after its CLOSE from reaching a new channel.
    pub fn id_reuse_delay(mut self, channels: usize) -> Self {
        self.proto = self.proto.id_reuse_delay(channels);
        self
    }

    /// How long [`Session::open`](crate::Session::open) waits for a slot and the peer's
    /// confirmation before it fails with [`Error::Timeout`](crate::Error::Timeout) (default
    /// 30 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.config.open_timeout = timeout;
        self
    }

    /// How long an incoming channel waits for [`Session::accept`](crate::Session::accept),
    /// and an OPEN waits unconfirmed, before it is refused (default 30 s, as the reference).
    pub fn accept_timeout(mut self, timeout: Duration) -> Self {
        self.config.accept_timeout = timeout;
        self
    }

    /// How long [`Session::close`](crate::Session::close) keeps trying to deliver frames already
    /// queued (default 5 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// How long a listener gives a connection to finish its WebSocket, TLS or QUIC handshake
    /// (default 10 s); slower ones are dropped.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Handshakes a listener runs at once (default 256; at least 1); past it, new
    /// connections wait (in the kernel's backlog, or QUIC's) until one finishes.
    pub fn max_handshakes(mut self, handshakes: usize) -> Self {
        self.config.max_handshakes = handshakes;
        self
    }

    /// Connections the kernel queues for a TCP, WebSocket or TLS listener before it accepts
    /// them (default 4096, capped by the system's own limit): a burst of clients beyond it
    /// sees its SYNs dropped and retries a second later.
    pub fn listen_backlog(mut self, connections: u32) -> Self {
        self.config.listen_backlog = connections;
        self
    }

    /// How long the reader keeps its receive buffers for reuse once bulk data stopped
    /// arriving (default 1 s; zero keeps none). While large DATA frames flow, the reader
    /// fills again buffers whose every byte the channels have read (up to two windows' worth
    /// kept), instead of taking new memory per frame; they are freed once none was needed
    /// for this long.
    pub fn read_buffer_idle(mut self, linger: Duration) -> Self {
        self.config.read_buffer_idle = linger;
        self
    }

    /// Bytes of frames the writer takes from the session at a time (default 256 KiB, or one
    /// frame when larger; at least 1). It writes them, and only then takes the next batch:
    /// a frame queued meanwhile waits behind one batch, not behind all that is queued, and
    /// takes its turn among the channels (see
    /// [`poll_transmit_up_to`](qtalk_mux_proto::Session::poll_transmit_up_to)).
    pub fn write_batch(mut self, bytes: usize) -> Self {
        self.config.write_batch = bytes;
        self
    }

    /// Bytes queued to send from which the writer task, on tokio's multi-thread runtime,
    /// writes them inside [`tokio::task::block_in_place`] (default 1 MiB; 0 never does).
    /// A writer moving bulk data keeps its worker thread busy for long stretches; moved off
    /// it this way, the worker's other tasks (the session's reader, the calls beside the
    /// bulk data) go on on another thread instead of waiting for it. At most as many
    /// writers as the machine has cores are moved at once, process-wide (each holds a
    /// thread of tokio's blocking pool meanwhile); the others write in place. On the
    /// current-thread runtime writes always happen in place.
    pub fn write_offload(mut self, bytes: usize) -> Self {
        self.config.write_offload = bytes;
        self
    }

    /// `TCP_NOTSENT_LOWAT` of the TCP connections this crate makes and accepts (default
    /// 16 KiB, as HTTP/2 servers commonly use; 0 leaves the system's setting), where the platform has it (Linux, Android):
    /// the kernel takes more only while less than this is unsent, so that what waits is
    /// queued in the session, where channels take turns, and not in the kernel, where a
    /// call's frame would wait behind all the bulk data before it.
    pub fn tcp_notsent_lowat(mut self, bytes: u32) -> Self {
        self.config.tcp_notsent_lowat = bytes;
        self
    }

    /// Over QUIC: how often an idle connection sends a keep-alive (default 10 s).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.config.keep_alive = interval;
        self
    }

    /// Over QUIC: a peer silent for this long is gone (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Over QUIC and WebTransport: when a name resolves to several addresses, how long a
    /// client waits for one connection attempt before it starts the next beside it (default
    /// 250 ms, RFC 8305's Connection Attempt Delay). An attempt that fails starts the next
    /// at once.
    pub fn connect_attempt_delay(mut self, delay: Duration) -> Self {
        self.config.connect_attempt_delay = delay;
        self
    }

    /// Over QUIC and WebTransport: the client endpoint (UDP sockets) that connections made
    /// with this configuration are dialed from. By default each configuration built has one
    /// of its own, shared by its clones; give several configurations the same one to share
    /// its socket.
    #[cfg(feature = "quic")]
    pub fn quic_endpoint(mut self, endpoint: crate::quic::Endpoint) -> Self {
        self.config.quic_endpoint = endpoint;
        self
    }

    /// The configuration, once every value is checked.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut config = self.config;
        config.proto = self.proto.build()?;
        if config.max_handshakes == 0 {
            return Err(ConfigError::Zero("max handshakes"));
        }
        if config.write_batch == 0 {
            return Err(ConfigError::Zero("write batch"));
        }
        Ok(config)
    }
}
