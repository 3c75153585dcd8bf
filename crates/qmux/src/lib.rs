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
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod channel;
mod config;
mod error;
mod listener;
mod output;
mod proxy;
mod session;
pub mod transport;

#[cfg(feature = "quic")]
pub mod quic;
#[cfg(feature = "tls")]
pub mod tls;

pub use channel::{Channel, PeerClosed, ReadHalf, WriteHalf};
pub use config::{Config, ConfigBuilder, ConfigError};
pub use error::{Error, ProtocolError};
pub use listener::Listener;
pub use proxy::{join, proxy};
pub use qtalk_mux_proto;
pub use session::Session;
