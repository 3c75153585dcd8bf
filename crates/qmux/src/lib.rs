//! **qmux** for tokio: many flow-controlled, full-duplex channels over one byte stream, wire
//! compatible with the Go reference implementation (qtalk-go's `mux` package).
//!
//! A [`Session`] runs over any `AsyncRead + AsyncWrite` transport ([`transport`] has TCP, Unix
//! sockets, WebSocket, stdio and child processes; [`Listener`] accepts connections). Either
//! side can [`open`](Session::open) channels and [`accept`](Session::accept) the other's. A
//! [`Channel`] is an `AsyncRead + AsyncWrite` stream with its own flow control, so one slow
//! reader never stalls the others.
//!
//! The protocol logic lives in the sans-IO crate [`qtalk_mux_proto`]; this crate moves bytes: one
//! reader task and one writer task per session, with frames batched into vectored writes.
//!
//! *qmux* is qtalk's subset of the SSH connection protocol (as qtalk-go's `mux`), not the IETF
//! QMux draft. Most users depend on `qtalk`, which re-exports this crate as `qtalk::mux`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), qtalk_mux::Error> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let listener = qtalk_mux::Listener::bind_tcp("127.0.0.1:0", Default::default()).await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let session = listener.accept().await.unwrap();
//!     while let Some(mut ch) = session.accept().await {
//!         tokio::spawn(async move {
//!             let mut msg = Vec::new();
//!             ch.read_to_end(&mut msg).await.unwrap();
//!             ch.write_all(&msg).await.unwrap(); // echo
//!         });
//!     }
//! });
//! let session = qtalk_mux::transport::connect_tcp(addr, Default::default()).await?;
//! let mut ch = session.open().await?;
//! ch.write_all(b"hello").await?;
//! ch.close_write()?;
//! let mut back = Vec::new();
//! ch.read_to_end(&mut back).await?;
//! assert_eq!(back, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Tasks
//!
//! Every task this crate spawns belongs to one session or one listener and ends with it:
//!
//! | task | spawned by | ends |
//! | --- | --- | --- |
//! | reader, writer (qmux) | [`Session::new`] / [`Session::from_split`] and everything built on them | when the session ends (its last handle dropped, [`Session::close`], the peer leaving or an error), after the writer flushed what was queued and shut the transport |
//! | delivery (QUIC, WebTransport) | [`quic::connect`], [`quic::over_connection`], `webtransport::connect`, QUIC and WebTransport listeners | with the connection; once `close` is called, it waits for the peer's acknowledgement of finished streams, then performs the close |
//! | handshakes (WebSocket, TLS, QUIC, WebTransport) | a [`Listener`] accepting | each within [`Config`]'s handshake timeout; all of them with the listener |
//!
//! A panic in the transport's code (a read, write, flush or shutdown) ends its session with
//! [`Error::TransportPanicked`], and a panic in a qmux session's task (or in an application task
//! while it held the session's state) with [`Error::Panicked`]: [`Session::wait`] and every
//! pending operation report it, and the tasks end as after any other error.
//!
//! quinn runs its own endpoint and connection drivers for QUIC; they end with the endpoint
//! (a client's [`quic::Endpoint`] is shared by the connections of a [`Config`], so its driver
//! ends once the configuration and its connections are gone). Over WebTransport,
//! web-transport-quinn adds one task per session, which reads the peer's close, and one while
//! a close is being sent.
//! Nothing is spawned per channel, and dropping a handle never performs I/O.
//!
//! The qmux reader keeps two timers of its own, both from [`Config`]: the accept deadline of
//! the peer's waiting channels (`accept_timeout`), and, only while it keeps receive buffers
//! for reuse after bulk data, the moment to free them (`read_buffer_idle`).
//!
//! # Public dependencies
//!
//! Three crates appear in this API, for connections and settings made elsewhere, and are
//! re-exported at the versions it uses: [`quic::quinn`] (quinn 0.11, `quic::over_connection`),
//! [`tls::rustls`] (rustls 0.23, the TLS settings) and [`transport::ws::tokio_tungstenite`]
//! (0.30, `over_websocket`). Use them through these paths to get matching versions. A major
//! release of one of them is a major release of this crate; nothing else of theirs leaks into
//! the API.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backend;
mod channel;
mod config;
mod conn_info;
mod error;
mod listener;
mod mux;
mod proxy;
mod session;
pub mod transport;

#[cfg(feature = "quic")]
pub mod quic;
#[cfg(feature = "quic")]
mod streams;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "webtransport")]
pub mod webtransport;

pub use channel::{Channel, PeerClosed, ReadHalf, WriteHalf};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use conn_info::{
    Certificate, ConnectionInfo, Extensions, PeerCredentials, TlsInfo, TransportKind,
    UpgradeRequest,
};
pub use error::{Error, ProtocolError};
pub use listener::Listener;
pub use proxy::{join, proxy};
pub use qtalk_mux_proto;
pub use qtalk_mux_proto::ChannelId;
pub use session::Session;
