//! Sans-IO core of **qmux**, the channel multiplexing protocol of qtalk (a subset of the SSH
//! connection protocol, RFC 4254 section 5).
//!
//! - [`frame`]: the seven messages and their exact bytes.
//! - [`Session`]: channel table, open/accept handshake, flow-control windows, EOF and CLOSE,
//!   and validation of everything the peer sends.
//!
//! Nothing here performs IO or depends on an async runtime; the `qmux` crate drives this state
//! machine over tokio.
//!
//! ```
//! use bytes::BytesMut;
//! use qtalk_mux_proto::{Config, Event, Session};
//!
//! let mut a = Session::new(Config::default());
//! let mut b = Session::new(Config::default());
//! let id = a.open().unwrap();
//!
//! // Move a's frames to b.
//! let mut wire = Vec::new();
//! a.poll_transmit(&mut wire);
//! let mut buf = BytesMut::from(&wire.concat()[..]);
//! b.handle_input(&mut buf).unwrap();
//! assert_eq!(b.poll_event(), Some(Event::Incoming(0)));
//! # let _ = id;
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod error;
pub mod frame;
mod session;

pub use config::{Config, ConfigBuilder, ConfigError};
pub use error::{ChannelError, ProtocolError};
pub use frame::Frame;
pub use session::{
    ChannelId, Event, OpenStart, OpenStatus, OpenTicket, ReadOutcome, Session, FLOOR_WINDOW,
};
