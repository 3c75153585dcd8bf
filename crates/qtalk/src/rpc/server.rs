//! Running handlers: [`Peer`] (one session that calls and responds) and [`Server`].

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::codec::{Codec, IntoCodec};
use crate::rpc::frame::FrameReader;
use crate::rpc::handler::{respond_fallback, Call, CallState, Handler, Responder};
use crate::rpc::respond_mux::clean_selector_cow;
use crate::rpc::{CallHeader, Caller, Error, MuxError, Options, RespondMux};

/// A limit shared by the sessions of a [`Server`]: a semaphore, and whether the last attempt
/// found it exhausted (so that reaching it is logged once, not once per call).
struct Limit {
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
    saturated: AtomicBool,
}

impl Limit {
    fn new(what: &'static str, max: usize) -> Arc<Limit> {
        Arc::new(Limit {
            what,
            max,
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            saturated: AtomicBool::new(false),
        })
    }

    /// A permit if one is free.
    fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        let p = self.permits.clone().try_acquire_owned().ok()?;
        self.saturated.store(false, Ordering::Relaxed);
        Some(p)
    }

    /// A permit, waiting (and saying so once) while the limit is reached.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        if let Some(p) = self.try_acquire() {
            return p;
        }
        if !self.saturated.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = self.max,
                "qtalk server: {} {} at once, the configured limit; more wait",
                self.max,
                self.what
            );
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// A peer's own routes first, then its fallback handler.
struct Routed {
    routes: Arc<RespondMux>,
    fallback: Arc<dyn Handler>,
}

impl Handler for Routed {
    fn respond(&self, responder: Responder, call: Call) -> crate::rpc::handler::BoxFuture<()> {
        match self.routes.route(call.selector()) {
            Some(h) => h.respond(responder, call),
            None => self.fallback.respond(responder, call),
        }
    }
}

/// Serves every channel the peer of `session` opens as a call to `handler`, one task per call,
/// until the session ends or `stop` is cancelled. With `calls`, each call holds a permit.
async fn serve_session(
    session: qtalk_mux::Session,
    handler: Arc<dyn Handler>,
    caller: Caller,
    options: Arc<Options>,
    tracker: TaskTracker,
    stop: CancellationToken,
    calls: Option<Arc<Limit>>,
) {
    let watch = Arc::new(HeaderWatch::default());
    // The header waits are timed in ticks of one timer, armed while any is in progress.
    let period = (options.header_timeout / 2).max(Duration::from_millis(1));
    let tick = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(tick);
    let mut armed = false;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        let ch = tokio::select! {
            biased;
            () = &mut stopped => break,
            () = &mut tick, if armed => {
                watch.tick();
                armed = watch.waiting.load(Ordering::Acquire) > 0;
                if armed {
                    tick.as_mut().reset(tokio::time::Instant::now() + period);
                }
                continue;
            }
            ch = session.accept() => ch,
        };
        let Some(ch) = ch else { break };
        let waiting = HeaderWait::new(&watch);
        if !armed {
            tick.as_mut().reset(tokio::time::Instant::now() + period);
            armed = true;
        }
        tracker.spawn(respond_call(
            ch,
            handler.clone(),
            caller.clone(),
            options.clone(),
            waiting,
            calls.clone(),
        ));
    }
    // Ends the header waits left (a session that ended ends them too, with their channels).
    watch.stop();
}

/// Ends the header waits of one session's new channels: when the session stops being served,
/// and when they have waited [`Options::header_timeout`]. Timed in ticks of one timer per
/// session (every half timeout) rather than by a timer per channel: a wait ends between the
/// timeout and one and a half times it.
#[derive(Default)]
struct HeaderWatch {
    notify: tokio::sync::Notify,
    /// Ticks so far.
    epoch: AtomicUsize,
    stopped: AtomicBool,
    /// Header waits in progress.
    waiting: AtomicUsize,
}

impl HeaderWatch {
    fn tick(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// `fut`, unless the session stops being served first, or the tick count reaches `until`.
    /// (`fut` is pinned by the caller: taken by value, it would be stored in this future and
    /// in every one awaiting it, and the task of every call would be the larger.)
    async fn guard<F: Future>(
        &self,
        mut fut: Pin<&mut F>,
        until: Option<usize>,
    ) -> Result<F::Output, NoHeader> {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            loop {
                // `notified` was made before these are read: no tick or stop goes unseen.
                if self.stopped.load(Ordering::Acquire) {
                    return Poll::Ready(Err(NoHeader::Stopped));
                }
                let epoch = self.epoch.load(Ordering::Acquire);
                if until.is_some_and(|u| epoch.wrapping_sub(u) < usize::MAX / 2) {
                    return Poll::Ready(Err(NoHeader::TimedOut));
                }
                match notified.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => notified.set(self.notify.notified()),
                }
            }
        })
        .await
    }
}

/// One channel's wait for its call header, counted in its session's [`HeaderWatch`].
struct HeaderWait {
    watch: Arc<HeaderWatch>,
    start: usize,
}

/// How a header wait ended without a header.
enum NoHeader {
    Stopped,
    TimedOut,
}

impl HeaderWait {
    fn new(watch: &Arc<HeaderWatch>) -> Self {
        watch.waiting.fetch_add(1, Ordering::AcqRel);
        HeaderWait {
            watch: watch.clone(),
            start: watch.epoch.load(Ordering::Acquire),
        }
    }

    /// `read`, unless the session stops being served or the timeout passes first. The read
    /// goes first: what the peer sent before it left (a bad header included) is still
    /// answered; a stop ends only a wait for bytes that are not there.
    async fn run<F: Future>(self, read: Pin<&mut F>) -> Result<F::Output, NoHeader> {
        // Three ticks after the start, at least two periods (the timeout) have passed.
        self.watch
            .guard(read, Some(self.start.wrapping_add(3)))
            .await
    }
}

impl Drop for HeaderWait {
    fn drop(&mut self) {
        self.watch.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Reads one call's header, runs its handler, and answers for it when it did not. Until the
/// header arrives nothing has started: the session no longer served (the server shutting
/// down, the peer dropped) ends the wait, and the channel is let go. With `calls`, the call
/// holds a permit from its header on; at the limit it waits for one (its arguments wait in the
/// channel's window, so the caller is slowed down, and other sessions keep their calls).
async fn respond_call(
    ch: qtalk_mux::Channel,
    handler: Arc<dyn Handler>,
    caller: Caller,
    options: Arc<Options>,
    waiting: HeaderWait,
    calls: Option<Arc<Limit>>,
) {
    let channel = ch.id();
    let codec = caller.codec().clone();
    let (mut r, w) = ch.into_split();
    let mut reader = FrameReader::new(options.max_frame);
    let watch = waiting.watch.clone();
    let header = {
        let read = reader.receive::<CallHeader, _>(&*codec, &mut r);
        tokio::pin!(read);
        waiting.run(read).await
    };
    let header = match header {
        Ok(Ok(h)) => h,
        Ok(Err(e @ (Error::Codec(_) | Error::FrameTooLarge { .. }))) => {
            // The reference never answers here and its caller hangs; answer with the error.
            tracing::debug!(channel = %channel, error = %e, "rpc: bad call header");
            if let Some(hook) = &options.on_bad_call {
                hook(channel, &e);
            }
            let msg = format!("bad call header: {e}");
            // The rare paths are boxed, so that the task of every call stays small.
            Box::pin(respond_fallback(w, &*codec, Some(msg))).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(channel = %channel, error = %e, "rpc: channel ended before a call header");
            return;
        }
        Err(NoHeader::TimedOut) => {
            tracing::debug!(channel = %channel, "rpc: no call header in time");
            return;
        }
        Err(NoHeader::Stopped) => {
            tracing::debug!(channel = %channel, "rpc: stopped before a call header");
            return;
        }
    };
    let _permit = match &calls {
        Some(limit) => match limit.try_acquire() {
            Some(p) => Some(p),
            None => match Box::pin(async {
                let acquire = limit.acquire();
                tokio::pin!(acquire);
                watch.guard(acquire, None).await
            })
            .await
            {
                Ok(p) => Some(p),
                Err(_) => return,
            },
        },
        None => None,
    };
    let selector = match clean_selector_cow(&header.selector) {
        std::borrow::Cow::Borrowed(_) => header.selector,
        std::borrow::Cow::Owned(clean) => clean,
    };
    // A callback registered on this session answers before the shared handler.
    let handler = caller.callbacks().lookup(&selector).unwrap_or(handler);
    let span = tracing::debug_span!("rpc call", selector = %selector, channel = %channel);
    async move {
        let slot = CallState::new(w);
        let responder = Responder::new(slot.clone(), codec.clone());
        let call = Call::new(
            selector,
            caller,
            reader,
            r,
            slot.clone(),
            options.args_grace,
        );
        let outcome = AssertUnwindSafe(handler.respond(responder, call))
            .catch_unwind()
            .await;
        let unanswered = slot.take_writer();
        match (outcome, unanswered) {
            (Ok(()), None) => tracing::debug!("rpc: responded"),
            (Ok(()), Some(w)) => {
                tracing::debug!("rpc: handler returned nothing; answering null");
                Box::pin(respond_fallback(w, &*codec, None)).await;
            }
            (Err(panic), w) => {
                let msg = panic_message(&panic);
                tracing::debug!(panic = %msg, "rpc: handler panicked");
                if let Some(w) = w {
                    let text = format!("panic: {msg}");
                    Box::pin(respond_fallback(w, &*codec, Some(text))).await;
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_string()
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
    stop: CancellationToken,
    started: Arc<std::sync::atomic::AtomicBool>,
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
            _alive: Arc::new(StopOnDrop(stop.clone())),
            stop,
            started: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Answers the calls that match no pattern of [`Peer::handle`] with `handler` (instead of
    /// `not found`): e.g. a whole service's [`RespondMux`], or a proxy. Set it before
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
        if self.started.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let serve = serve_session(
            self.session().clone(),
            self.handler.clone(),
            self.caller.clone(),
            self.options.clone(),
            self.tracker.clone(),
            self.stop.clone(),
            None,
        );
        tokio::spawn(serve);
    }

    /// Stops taking new calls, lets calls in flight finish for up to `grace`, then closes the
    /// session.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        self.session().close();
    }

    /// Closes the session at once.
    pub fn close(&self) {
        self.stop.cancel();
        self.session().close();
    }
}

/// Serves calls on every session of a listener with one handler (typically a
/// [`RespondMux`]), with graceful shutdown.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use qtalk::rpc::{func, Call, RespondMux, Server};
/// let mux = RespondMux::new();
/// mux.handle("Upper", func(|_c: Call, (s,): (String,)| async move {
///     Ok::<_, String>(s.to_uppercase())
/// })).unwrap();
/// let server = Server::new(mux, qtalk::codec::Json);
/// let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:9000", Default::default()).await?;
/// server.serve(listener).await
/// # }
/// ```
///
/// Limits shared by all its sessions: [`Server::max_sessions`] (default
/// [`DEFAULT_MAX_SESSIONS`]) and [`Server::max_calls`] (default [`DEFAULT_MAX_CALLS`]). At
/// either, the server slows down rather than refusing: it stops accepting connections, or
/// calls, until one ends, and logs a warning once each time the limit is reached.
#[derive(Clone)]
pub struct Server {
    handler: Arc<dyn Handler>,
    codec: Arc<dyn Codec>,
    options: Arc<Options>,
    tracker: TaskTracker,
    stop: CancellationToken,
    sessions: Arc<Mutex<Sessions>>,
    session_limit: Arc<Limit>,
    call_limit: Arc<Limit>,
}

/// The sessions a [`Server`] serves, for its shutdown.
#[derive(Default)]
struct Sessions {
    list: Vec<qtalk_mux::Session>,
    /// Prune ended sessions once the list is this long.
    prune_at: usize,
}

/// Sessions a [`Server`] serves at once by default.
pub const DEFAULT_MAX_SESSIONS: usize = 16 * 1024;

/// Calls a [`Server`] runs at once across all its sessions by default.
pub const DEFAULT_MAX_CALLS: usize = 64 * 1024;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("codec", &self.codec.name())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server answering with `handler` (typically a [`RespondMux`]) using `codec`.
    pub fn new(handler: impl Handler, codec: impl IntoCodec) -> Server {
        Server::with_options(handler, codec, Options::default())
    }

    /// [`Server::new`] with explicit options.
    pub fn with_options(handler: impl Handler, codec: impl IntoCodec, options: Options) -> Server {
        Server {
            handler: Arc::new(handler),
            codec: codec.into_codec(),
            options: Arc::new(options),
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            sessions: Arc::default(),
            session_limit: Limit::new("sessions", DEFAULT_MAX_SESSIONS),
            call_limit: Limit::new("calls", DEFAULT_MAX_CALLS),
        }
    }

    /// Sessions served at once (default [`DEFAULT_MAX_SESSIONS`]); at the limit, `serve` stops
    /// accepting until a session ends. Set it before serving.
    pub fn max_sessions(mut self, sessions: usize) -> Server {
        self.session_limit = Limit::new("sessions", sessions.max(1));
        self
    }

    /// Calls run at once across all sessions (default [`DEFAULT_MAX_CALLS`]); at the limit,
    /// new calls wait unaccepted until one ends. Set it before serving.
    pub fn max_calls(mut self, calls: usize) -> Server {
        self.call_limit = Limit::new("calls", calls.max(1));
        self
    }

    /// Accepts sessions from `listener` and serves each, until [`Server::shutdown`] or an
    /// accept error.
    pub async fn serve(&self, listener: qtalk_mux::Listener) -> std::io::Result<()> {
        loop {
            let permit = tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                p = self.session_limit.acquire() => p,
            };
            let session = tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                s = listener.accept() => s?,
            };
            self.respond_with(session, Some(permit));
        }
    }

    /// Serves calls arriving on one session (in the background). The handlers' callers
    /// reach the session's peer. It counts towards [`Server::max_sessions`] once a slot is
    /// free (it waits for one).
    pub fn respond(&self, session: qtalk_mux::Session) {
        self.respond_with(session, None);
    }

    fn respond_with(&self, session: qtalk_mux::Session, permit: Option<OwnedSemaphorePermit>) {
        {
            // Ended sessions are pruned when the list has doubled since the last pruning, so
            // that accepting stays cheap with many sessions.
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if sessions.list.len() >= sessions.prune_at {
                sessions.list.retain(|s| !s.is_closed());
                sessions.prune_at = (2 * sessions.list.len()).max(64);
            }
            sessions.list.push(session.clone());
        }
        let caller =
            Caller::with_options(session.clone(), self.codec.clone(), (*self.options).clone());
        let serve = serve_session(
            session,
            self.handler.clone(),
            caller,
            self.options.clone(),
            self.tracker.clone(),
            self.stop.clone(),
            Some(self.call_limit.clone()),
        );
        let sessions = self.session_limit.clone();
        tokio::spawn(async move {
            let _permit = match permit {
                Some(p) => p,
                None => sessions.acquire().await,
            };
            serve.await;
        });
    }

    /// Stops accepting sessions and calls, waits up to `grace` for calls in flight, then
    /// closes every session.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        let sessions =
            std::mem::take(&mut self.sessions.lock().unwrap_or_else(|p| p.into_inner()).list);
        for s in sessions {
            s.close();
        }
    }

    /// Calls in flight right now: those whose header arrived and that have not ended (a channel
    /// still waiting for its header, such as a caller's spare, is not a call yet).
    pub fn calls_in_flight(&self) -> usize {
        let limit = &self.call_limit;
        limit.max.min(Semaphore::MAX_PERMITS) - limit.permits.available_permits()
    }
}
