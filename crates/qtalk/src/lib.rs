//! **qtalk** for Rust: bidirectional RPC over [`qmux`] channels, wire compatible with the Go
//! reference implementation (qtalk-go).
//!
//! - [`codec`]: JSON and CBOR, byte-identical to the reference's encoders.
//! - [`rpc`]: callers, responders, selector routing, peers and servers. Every call runs on its
//!   own channel; a call can stream values or continue into a raw byte stream; either side of
//!   a session can call the other.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), qtalk::rpc::Error> {
//! use qtalk::codec::Json;
//! use qtalk::rpc::{func, Call, Caller, RespondMux, Server};
//!
//! let mux = RespondMux::new();
//! mux.handle("Upper", func(|_call: Call, (s,): (String,)| async move {
//!     Ok::<_, String>(s.to_uppercase())
//! })).unwrap();
//! let server = Server::new(mux, Json);
//!
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! server.respond(qmux::Session::new(b, Default::default()));
//! let caller = Caller::new(qmux::Session::new(a, Default::default()), Json);
//! let reply: String = caller.call("Upper", &["hello world"]).await?;
//! assert_eq!(reply, "HELLO WORLD");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod codec;
pub mod rpc;

pub use codec::Value;
