//! Handlers tested in memory: a [`TestCall`] builds the [`Call`] and the [`Responder`] a
//! handler receives, without a session, a transport or a peer, runs the handler, and hands
//! back what it answered as a [`TestResponse`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use qtalk::rpc::testing::TestCall;
//! use qtalk::rpc::{func, Call};
//!
//! let greet = func(|call: Call, (name,): (String,)| async move {
//!     let who = call.metadata().get("x-user").unwrap_or("nobody").to_string();
//!     Ok::<_, String>(format!("hello {name}, from {who}"))
//! });
//! let reply = TestCall::new("Greet")
//!     .args(&["Ada"])
//!     .metadata("x-user", "bob")
//!     .run(&greet)
//!     .await;
//! assert_eq!(reply.value::<String>().unwrap(), "hello Ada, from bob");
//! # }
//! ```
//!
//! The call's [`Call::caller`] reaches no peer there: its calls fail with
//! [`Error::Session`] unless the test gives one ([`TestCall::caller`]).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, Codec, IntoCodec, Json};
use crate::rpc::frame::{encode_frame, FrameReader};
use crate::rpc::io::{CallReader, CallWriter, MemoryReader, MemorySink, MemoryWriter};
use crate::rpc::responder::{respond_fallback, CallState};
use crate::rpc::service::panic_message;
use crate::rpc::{
    clean_selector, Call, CallContext, Caller, Error, Handler, Incoming, Options, Outcome,
    Responder, ResponseHeader,
};

/// A call to run against a handler in memory (see the [module](self) documentation).
pub struct TestCall {
    selector: String,
    codec: Arc<dyn Codec>,
    input: BytesMut,
    context: CallContext,
    connection: qtalk_mux::ConnectionInfo,
    caller: Option<Caller>,
    cancel_after: Option<Duration>,
}

impl std::fmt::Debug for TestCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCall")
            .field("selector", &self.selector)
            .field("codec", &self.codec.name())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl TestCall {
    /// A call of `selector` (normalized as a server does), JSON, with no arguments yet.
    pub fn new(selector: &str) -> TestCall {
        TestCall {
            selector: clean_selector(selector),
            codec: Arc::new(Json),
            input: BytesMut::new(),
            context: CallContext::new(),
            connection: qtalk_mux::ConnectionInfo::default(),
            caller: None,
            cancel_after: None,
        }
    }

    /// The codec of the call (JSON by default). Set it before the arguments.
    pub fn codec(mut self, codec: impl IntoCodec) -> TestCall {
        self.codec = codec.into_codec();
        self
    }

    /// Sends `value` (the first is the arguments; later ones are streamed values).
    ///
    /// # Panics
    ///
    /// When the codec cannot encode `value`.
    pub fn args<T: Serialize + ?Sized>(mut self, value: &T) -> TestCall {
        encode_frame(&*self.codec, value, &mut self.input).expect("the test value encodes");
        self
    }

    /// Sends raw bytes after the values (for handlers that continue into a byte stream).
    pub fn bytes(mut self, data: impl AsRef<[u8]>) -> TestCall {
        self.input.extend_from_slice(data.as_ref());
        self
    }

    /// Sets a metadata entry of the call.
    pub fn metadata(mut self, key: &str, value: &str) -> TestCall {
        self.context.metadata_mut().insert(key, value);
        self
    }

    /// Gives the call a deadline `timeout` after it is run.
    pub fn timeout(mut self, timeout: Duration) -> TestCall {
        self.context = self.context.with_timeout(timeout);
        self
    }

    /// The call's whole context (metadata and deadline).
    pub fn context(mut self, context: CallContext) -> TestCall {
        self.context = context;
        self
    }

    /// What the call's connection tells (default: nothing, transport `Other`): addresses,
    /// TLS peer certificates, a WebSocket request, Unix credentials, extensions.
    pub fn connection(mut self, info: qtalk_mux::ConnectionInfo) -> TestCall {
        self.connection = info;
        self
    }

    /// The caller [`Call::caller`] returns, for handlers that call back.
    pub fn caller(mut self, caller: Caller) -> TestCall {
        self.caller = Some(caller);
        self
    }

    /// Plays a caller that gives up `after` the handler starts: [`Call::cancelled`]
    /// completes then, and writes fail.
    pub fn cancel_after(mut self, after: Duration) -> TestCall {
        self.cancel_after = Some(after);
        self
    }

    /// The call and its responder, for a handler (or a tower service, through [`Incoming`])
    /// driven by the test itself; the [`TestOutput`] reads what was answered.
    pub fn into_parts(self) -> (Responder, Call, TestOutput) {
        let sink = Arc::new(MemorySink::default());
        let writer = CallWriter::Memory(MemoryWriter { sink: sink.clone() });
        let slot = CallState::new(writer, self.codec.clone());
        let responder = Responder::new(slot.clone());
        let caller = match self.caller {
            Some(c) => c,
            None => {
                // A session over nothing: it ends at once, so calls on it fail.
                let session = qtalk_mux::Session::new(tokio::io::empty(), Default::default())
                    .with_connection_info(self.connection.clone());
                Caller::new(session, self.codec.clone())
            }
        };
        let reader = MemoryReader {
            chunks: VecDeque::from([self.input.freeze()]),
        };
        let call = Call::new(
            self.selector,
            caller,
            self.context,
            FrameReader::new(Options::default().max_frame),
            CallReader::Memory(reader),
            slot.clone(),
            Duration::ZERO,
        );
        if let Some(after) = self.cancel_after {
            let gone = sink.gone.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                gone.cancel();
            });
        }
        let output = TestOutput {
            sink,
            slot,
            codec: self.codec,
        };
        (responder, call, output)
    }

    /// The call as a tower request, for testing middleware; the [`TestOutput`] reads what
    /// was answered.
    pub fn into_incoming(self) -> (Incoming, TestOutput) {
        let (r, c, out) = self.into_parts();
        (Incoming::new(r, c), out)
    }

    /// Runs `handler` on the call to its end, answering for it as a server does when it
    /// did not (`null`, `panic: ...`, or [`DEADLINE_EXCEEDED`](crate::rpc::DEADLINE_EXCEEDED)
    /// once the call's deadline passed), and returns what it answered.
    pub async fn run<H: Handler + ?Sized>(self, handler: &H) -> TestResponse {
        let deadline = self.context.deadline();
        let (responder, call, output) = self.into_parts();
        let outcome = match AssertUnwindSafe(handler.respond(responder, call))
            .catch_unwind()
            .await
        {
            Ok(()) => output.slot.outcome(),
            Err(p) => Outcome::Panicked(panic_message(&p)),
        };
        if let Some(w) = output.slot.take_writer() {
            let error = match &outcome {
                Outcome::Panicked(m) => Some(format!("panic: {m}")),
                _ => crate::rpc::context::unanswered_error(deadline),
            };
            respond_fallback(w, &*output.codec, error).await;
        }
        output.response(outcome)
    }
}

/// Reads what a responder made with [`TestCall::into_parts`] answered.
pub struct TestOutput {
    sink: Arc<MemorySink>,
    slot: crate::rpc::responder::Slot,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for TestOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOutput").finish_non_exhaustive()
    }
}

impl TestOutput {
    /// How the call was answered so far.
    pub fn outcome(&self) -> Outcome {
        self.slot.outcome()
    }

    /// What was answered so far, as the caller would read it.
    pub fn response(&self, outcome: Outcome) -> TestResponse {
        let out = self.sink.out.lock().unwrap_or_else(|p| p.into_inner());
        TestResponse {
            bytes: Bytes::copy_from_slice(&out.bytes),
            eof: out.eof,
            closed: out.closed,
            codec: self.codec.clone(),
            outcome,
        }
    }
}

/// What a handler answered, as its caller would read it.
pub struct TestResponse {
    bytes: Bytes,
    eof: bool,
    closed: bool,
    codec: Arc<dyn Codec>,
    outcome: Outcome,
}

impl std::fmt::Debug for TestResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestResponse")
            .field("header", &self.header().ok())
            .field("outcome", &self.outcome)
            .field("bytes", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// Splits the frames off the front of `bytes`: their bodies, and what follows them.
fn frames(bytes: &Bytes) -> (Vec<Bytes>, Bytes) {
    let mut rest = bytes.clone();
    let mut out = Vec::new();
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest.len() < 4 + len {
            break;
        }
        let frame = rest.slice(4..4 + len);
        rest = rest.slice(4 + len..);
        out.push(frame);
    }
    (out, rest)
}

impl TestResponse {
    /// How the handler answered (as middleware sees it).
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The response header.
    pub fn header(&self) -> Result<ResponseHeader, Error> {
        let (frames, _) = frames(&self.bytes);
        let first = frames.first().ok_or(Error::Truncated)?;
        Ok(codec::decode(&*self.codec, first)?)
    }

    /// The error text, when the handler answered with one.
    pub fn error(&self) -> Option<String> {
        self.header().ok().and_then(|h| h.error)
    }

    /// The first value after the header, or the remote error ([`Error::Remote`]).
    pub fn value<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if let Some(e) = self.error() {
            return Err(Error::Remote(e));
        }
        let (frames, _) = frames(&self.bytes);
        let body = frames.get(1).ok_or(Error::Truncated)?;
        Ok(codec::decode(&*self.codec, body)?)
    }

    /// Every value after the header (the reply, then streamed values of a continued call)
    /// that decodes as a `T`, up to the first that does not (raw bytes may follow).
    pub fn values<T: DeserializeOwned>(&self) -> Vec<T> {
        let (frames, _) = frames(&self.bytes);
        frames
            .iter()
            .skip(1)
            .map_while(|f| codec::decode(&*self.codec, f).ok())
            .collect()
    }

    /// Everything the responder wrote (frames and raw bytes), as the caller's channel would
    /// deliver it.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// True when the responder ended its side (EOF or CLOSE; a response that did not
    /// continue always does once its call is dropped).
    pub fn ended(&self) -> bool {
        self.eof || self.closed
    }
}
