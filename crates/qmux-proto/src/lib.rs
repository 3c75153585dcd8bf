//! Sans-IO core of **qmux**, the channel multiplexing protocol of qtalk (a subset of the SSH
//! connection protocol, RFC 4254 section 5).
//!
//! - [`frame`]: the seven messages and their exact bytes.
//! - [`Session`]: channel table, open/accept handshake, flow-control windows, EOF and CLOSE,
//!   and validation of everything the peer sends.
//!
//! Nothing here performs IO or depends on an async runtime; the `qtalk-mux` crate drives this
//! state machine over tokio. *qmux* is qtalk's own protocol, not the IETF QMux draft.
//!
//! Two sessions wired back to back, by hand:
//!
//! ```
//! use bytes::BytesMut;
//! use qtalk_mux_proto::{ChannelId, Config, Event, OpenStart, Session};
//!
//! fn deliver(from: &mut Session, to: &mut Session) {
//!     let mut wire = Vec::new();
//!     let n = from.poll_transmit(&mut wire);
//!     from.on_transmitted(n);
//!     let mut buf = BytesMut::from(&wire.concat()[..]);
//!     to.handle_input(&mut buf).unwrap();
//! }
//!
//! let mut a = Session::new(Config::default());
//! let mut b = Session::new(Config::default());
//! let OpenStart::Started(id) = a.open().unwrap() else { unreachable!() };
//! deliver(&mut a, &mut b);
//! assert_eq!(b.poll_event(), Some(Event::Incoming(ChannelId::new(0))));
//! b.accept(ChannelId::new(0)).unwrap();
//! deliver(&mut b, &mut a);
//! assert_eq!(a.poll_event(), Some(Event::OpenReply(id)));
//!
//! a.send(id, b"hello").unwrap();
//! deliver(&mut a, &mut b);
//! let mut got = [0u8; 5];
//! b.read(ChannelId::new(0), &mut got).unwrap();
//! assert_eq!(&got, b"hello");
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
