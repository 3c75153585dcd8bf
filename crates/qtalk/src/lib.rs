//! **qtalk** for Rust: bidirectional RPC over [qmux](mux) channels, wire compatible with the Go
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
//! server.respond(qtalk::mux::Session::new(b, Default::default()));
//! let caller = Caller::new(qtalk::mux::Session::new(a, Default::default()), Json);
//! let reply: String = caller.call("Upper", &["hello world"]).await?;
//! assert_eq!(reply, "HELLO WORLD");
//! # Ok(())
//! # }
//! ```
//!
//! # Typed services
//!
//! [`service`] turns a trait of async methods into a service: implement the trait, serve it
//! with `into_mux`, and call it through the generated `<Trait>Client`. Each method is a selector
//! (the method name in Go's exported style: `to_upper` is `ToUpper`, or set one with
//! `#[qtalk(selector = "...")]`) taking its parameters as a positional array, which is how the
//! reference's `fn.HandlerFrom` exports a Go struct's methods, so either side may be Go.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), qtalk::rpc::Error> {
//! use qtalk::codec::Json;
//! use qtalk::rpc::{Call, Caller, Server};
//!
//! #[qtalk::service]
//! pub trait Text {
//!     /// Upper-cases a text.
//!     async fn upper(&self, text: String) -> String;
//!     /// Fails unless the word is known.
//!     async fn lookup(&self, word: String) -> Result<u32, String>;
//!     /// A handler may take the `Call` first, e.g. to call back its caller.
//!     async fn whoami(&self, call: Call) -> String;
//! }
//!
//! struct MyText;
//!
//! impl Text for MyText {
//!     async fn upper(&self, text: String) -> String {
//!         text.to_uppercase()
//!     }
//!     async fn lookup(&self, word: String) -> Result<u32, String> {
//!         if word == "one" { Ok(1) } else { Err(format!("unknown word {word:?}")) }
//!     }
//!     async fn whoami(&self, call: Call) -> String {
//!         call.selector().to_string()
//!     }
//! }
//!
//! let server = Server::new(MyText.into_mux(), Json);
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! server.respond(qtalk::mux::Session::new(b, Default::default()));
//!
//! let text = TextClient::new(Caller::new(qtalk::mux::Session::new(a, Default::default()), Json));
//! assert_eq!(text.upper("hello".into()).await?, "HELLO");
//! assert_eq!(text.lookup("one".into()).await?, 1);
//! let err = text.lookup("two".into()).await.unwrap_err();
//! assert_eq!(err.to_string(), "remote: unknown word \"two\"");
//! assert_eq!(text.whoami().await?, "/Whoami");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// The README's code blocks compile as doc tests, so they cannot drift from the API (its QUIC
// example needs feature `quic`, which workspace builds turn on through qtalk-cli).
#[cfg(all(doctest, feature = "quic"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

pub mod codec;
pub mod rpc;

pub use codec::Value;

/// The base layer: qmux sessions and channels over TCP, Unix sockets, WebSocket, TLS, stdio or
/// any byte stream, and QUIC (the crate `qtalk-mux`, re-exported whole). qmux here is qtalk's
/// subset of the SSH connection protocol, as in qtalk-go's `mux` package; it is not IETF QMux.
pub use qtalk_mux as mux;
pub use qtalk_mux::{Channel, Listener, Session};

/// Makes a typed qtalk service of a trait (see [the crate documentation](crate#typed-services)).
///
/// On a trait whose items are `async fn` methods taking `&self`, then optionally a
/// [`rpc::Call`], then owned parameters (each `DeserializeOwned`), and returning a
/// `Serialize` reply or a `Result<T, E>` with `E: Display` (the error answers the call), it
/// generates:
///
/// - the trait, with each method returning a `Send` future (implement them with `async fn`);
/// - a provided method `into_mux(self) -> RespondMux` routing every method's selector to the
///   implementation (mount it under a prefix with `RespondMux::handle("prefix", ...)`);
/// - `<Trait>Client` with `new(caller)`, `with_prefix(caller, "prefix")` and one async method
///   per trait method, returning `Result<T, rpc::Error>`.
///
/// Selectors are the method names in Go's exported style (`to_upper` is `ToUpper`) unless a
/// method says `#[qtalk(selector = "...")]`; two methods may not share one.
#[cfg(feature = "macros")]
pub use qtalk_macros::service;
