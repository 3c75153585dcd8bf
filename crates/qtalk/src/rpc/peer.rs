//! [`Peer`]: one session that both calls and responds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::IntoCodec;
use crate::rpc::handler::BoxFuture;
use crate::rpc::serve::{serve_session, Serving};
use crate::rpc::{Call, Caller, Error, Handler, MuxError, Options, RespondMux, Responder};

/// A peer's own routes first, then its fallback handler.
struct Routed {
    routes: Arc<RespondMux>,
    fallback: Arc<dyn Handler>,
}

impl Handler for Routed {
    fn respond(&self, responder: Responder, call: Call) -> BoxFuture<()> {
        match self.routes.route(call.selector()) {
            Some(h) => h.respond(responder, call),
            None => self.fallback.respond(responder, call),
        }
    }
}

/// One session that both calls and responds: either side of a connection can be a peer, and
/// peers call each other in both directions (callbacks, workers, state sync).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), qtalk::rpc::Error> {
/// use qtalk::rpc::{func, Call, Peer};
/// use qtalk::codec::Json;
///
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let a = Peer::new(qtalk::mux::Session::new(a, Default::default()), Json);
/// let b = Peer::new(qtalk::mux::Session::new(b, Default::default()), Json);
/// b.handle("hello", func(|_c: Call, (): ()| async { Ok::<_, String>("B") })).unwrap();
/// b.respond();
/// let reply: String = a.call("hello", &()).await?;
/// assert_eq!(reply, "B");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Peer {
    caller: Caller,
    mux: Arc<RespondMux>,
    handler: Arc<dyn Handler>,
    options: Arc<Options>,
    tracker: TaskTracker,
    /// The serving task and the tasks of its channels.
    channels: TaskTracker,
    draining: CancellationToken,
    stop: CancellationToken,
    started: Arc<AtomicBool>,
    /// Held by the peer's clones only (not by its serving task): when the last one goes, the
    /// serving task stops, so that the session closes once nothing else holds it.
    _alive: Arc<StopOnDrop>,
}

/// Cancels its token when dropped.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("caller", &self.caller)
            .field("mux", &self.mux)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer on `session` using `codec`, routing incoming calls through its own
    /// [`RespondMux`] (see [`Peer::handle`]). Call [`Peer::respond`] to start answering.
    pub fn new(session: qtalk_mux::Session, codec: impl IntoCodec) -> Peer {
        Peer::with_options(session, codec, Options::default())
    }

    /// [`Peer::new`] with explicit options.
    pub fn with_options(
        session: qtalk_mux::Session,
        codec: impl IntoCodec,
        options: Options,
    ) -> Peer {
        let mux = Arc::new(RespondMux::new());
        let stop = CancellationToken::new();
        Peer {
            caller: Caller::with_options(session, codec, options.clone()),
            mux: mux.clone(),
            handler: mux,
            options: Arc::new(options),
            tracker: TaskTracker::new(),
            channels: TaskTracker::new(),
            draining: CancellationToken::new(),
            _alive: Arc::new(StopOnDrop(stop.clone())),
            stop,
            started: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Answers the calls that match no pattern of [`Peer::handle`] with `handler` (instead of
    /// `not found`): e.g. a whole service's [`RespondMux`], a proxy, or a handler under
    /// middleware ([`ServiceHandler`](crate::rpc::ServiceHandler)). Set it before
    /// [`Peer::respond`].
    pub fn handler(mut self, handler: impl Handler) -> Peer {
        self.handler = Arc::new(Routed {
            routes: self.mux.clone(),
            fallback: Arc::new(handler),
        });
        self
    }

    /// Registers a handler on the peer's mux.
    pub fn handle(&self, pattern: &str, handler: impl Handler) -> Result<(), MuxError> {
        self.mux.handle(pattern, handler)
    }

    /// The peer's mux.
    pub fn mux(&self) -> &RespondMux {
        &self.mux
    }

    /// The caller for this peer's session.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The session.
    pub fn session(&self) -> &qtalk_mux::Session {
        self.caller.session()
    }

    /// Calls the other side (see [`Caller::call`]).
    pub async fn call<A, R>(&self, selector: &str, args: &A) -> Result<R, Error>
    where
        A: serde::Serialize + ?Sized,
        R: serde::de::DeserializeOwned,
    {
        self.caller.call(selector, args).await
    }

    /// Starts answering incoming calls in the background (once; later calls do nothing), until
    /// the session ends or the last clone of this peer is dropped (calls in flight finish).
    pub fn respond(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let serving = Arc::new(Serving {
            handler: self.handler.clone(),
            caller: self.caller.clone(),
            options: self.options.clone(),
            tracker: self.tracker.clone(),
            draining: self.draining.clone(),
            channels: Some(self.channels.clone()),
            calls: None,
        });
        self.channels
            .spawn(serve_session(serving, self.stop.clone()));
    }

    /// Shuts down gracefully: calls that arrive from now on are refused (the caller reads
    /// [`SHUTTING_DOWN`](crate::rpc::SHUTTING_DOWN), see
    /// [`Error::is_shutting_down`]), calls in flight may finish for up to `grace`, then the
    /// session is closed.
    ///
    /// When the session has already ended, it also waits (within `grace`) for what the peer
    /// sent before it left to be handled: channels not yet taken, headers not yet read (a bad
    /// one reaches [`Options`]' bad-call hook). Every read ends promptly then.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.draining.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout_at(deadline, self.tracker.wait()).await;
        if self.session().is_closed() {
            self.channels.close();
            let _ = tokio::time::timeout_at(deadline, self.channels.wait()).await;
        }
        self.stop.cancel();
        self.session().close();
    }

    /// Closes the session at once.
    pub fn close(&self) {
        self.stop.cancel();
        self.session().close();
    }
}
