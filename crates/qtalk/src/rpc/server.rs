//! [`Server`]: serves every session of a listener, with limits and a graceful shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::{Codec, IntoCodec};
use crate::rpc::serve::{serve_session, Limit, Serving};
use crate::rpc::{Caller, Handler, Options};

/// How long [`Server::serve`] pauses after a transient accept error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// An accept error that passes: the next accept may succeed.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    // EMFILE, ENFILE and ENOMEM have the same numbers on Linux, the BSDs and macOS.
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock | K::TimedOut
    ) || matches!(e.raw_os_error(), Some(12 | 23 | 24))
}

/// Makes the handler of one session (see [`Server::per_session`]).
type MakeHandler = dyn Fn(&qtalk_mux::Session) -> Arc<dyn Handler> + Send + Sync;

/// Where a server's handlers come from: one for every session, or one made per session.
#[derive(Clone)]
enum Handlers {
    Shared(Arc<dyn Handler>),
    PerSession(Arc<MakeHandler>),
}

/// Serves calls on every session of a listener with one handler (typically a
/// [`RespondMux`](crate::rpc::RespondMux), possibly under middleware, see
/// [`ServiceHandler`](crate::rpc::ServiceHandler)), with graceful shutdown.
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
/// Limits shared by all its sessions, from its [`Options`]: `max_sessions` (default
/// [`DEFAULT_MAX_SESSIONS`](crate::rpc::DEFAULT_MAX_SESSIONS)) and `max_calls` (default
/// [`DEFAULT_MAX_CALLS`](crate::rpc::DEFAULT_MAX_CALLS)). At either, the server slows down
/// rather than refusing: it stops accepting connections, or calls, until one ends, and logs a
/// warning once each time the limit is reached.
#[derive(Clone)]
pub struct Server {
    handlers: Handlers,
    codec: Arc<dyn Codec>,
    options: Arc<Options>,
    tracker: TaskTracker,
    /// Cancelled when a shutdown begins: new sessions and calls are refused.
    draining: CancellationToken,
    /// Cancelled when the shutdown's grace period is over: sessions stop being served.
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

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("codec", &self.codec.name())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server answering with `handler` (typically a [`RespondMux`](crate::rpc::RespondMux))
    /// using `codec`.
    pub fn new(handler: impl Handler, codec: impl IntoCodec) -> Server {
        Server::with_options(handler, codec, Options::default())
    }

    /// [`Server::new`] with explicit options (limits included).
    pub fn with_options(handler: impl Handler, codec: impl IntoCodec, options: Options) -> Server {
        Server::from_handlers(Handlers::Shared(Arc::new(handler)), codec, options)
    }

    /// A server that makes a handler for each session it serves, when it starts serving it:
    /// for state that lives as long as a connection (what a peer registered, a counter),
    /// keyed by nothing but the closure's captures. `make` may look at the session (its
    /// [`connection_info`](qtalk_mux::Session::connection_info)) and spawn a task that waits
    /// for its end.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use qtalk::rpc::{func, Call, Handler, Options, RespondMux, Server};
    /// let server = Server::per_session(
    ///     |session: &qtalk::mux::Session| {
    ///         let transport = session.connection_info().transport();
    ///         let mux = RespondMux::new();
    ///         mux.handle("Transport", func(move |_c: Call, (): ()| async move {
    ///             Ok::<_, String>(transport.name())
    ///         })).unwrap();
    ///         Arc::new(mux) as Arc<dyn Handler>
    ///     },
    ///     qtalk::codec::Json,
    ///     Options::default(),
    /// );
    /// # let _ = server;
    /// ```
    pub fn per_session<F>(make: F, codec: impl IntoCodec, options: Options) -> Server
    where
        F: Fn(&qtalk_mux::Session) -> Arc<dyn Handler> + Send + Sync + 'static,
    {
        Server::from_handlers(Handlers::PerSession(Arc::new(make)), codec, options)
    }

    fn from_handlers(handlers: Handlers, codec: impl IntoCodec, options: Options) -> Server {
        Server {
            handlers,
            codec: codec.into_codec(),
            session_limit: Limit::new("sessions", options.max_sessions),
            call_limit: Limit::new("calls", options.max_calls),
            options: Arc::new(options),
            tracker: TaskTracker::new(),
            draining: CancellationToken::new(),
            stop: CancellationToken::new(),
            sessions: Arc::default(),
        }
    }

    /// The options the server runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Accepts sessions from `listener` and serves each, until [`Server::shutdown`] or a
    /// lasting accept error. Transient accept errors (a connection reset before it was
    /// accepted, out of file descriptors or memory) are logged and retried after a short
    /// pause, as the connections already served go on.
    pub async fn serve(&self, listener: qtalk_mux::Listener) -> std::io::Result<()> {
        loop {
            let permit = tokio::select! {
                _ = self.draining.cancelled() => return Ok(()),
                p = self.session_limit.acquire() => p,
            };
            let session = loop {
                let accepted = tokio::select! {
                    _ = self.draining.cancelled() => return Ok(()),
                    s = listener.accept() => s,
                };
                match accepted {
                    Ok(s) => break s,
                    Err(e) if transient(&e) => {
                        tracing::warn!(error = %e, "qtalk server: accept failed; retrying");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                    Err(e) => return Err(e),
                }
            };
            self.respond_with(session, Some(permit));
        }
    }

    /// Serves calls arriving on one session (in the background). The handlers' callers
    /// reach the session's peer. It counts towards the session limit once a slot is free (it
    /// waits for one).
    pub fn respond(&self, session: qtalk_mux::Session) {
        self.respond_with(session, None);
    }

    fn respond_with(&self, session: qtalk_mux::Session, permit: Option<OwnedSemaphorePermit>) {
        {
            // Ended sessions are pruned when the list has doubled since the last pruning, so
            // that accepting stays cheap with many sessions.
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            // Checked under the lock that a shutdown takes the list with, after cancelling
            // `draining`: a session accepted as a shutdown begins is either in the list it
            // closes or closed here, never left open and unserved.
            if self.draining.is_cancelled() {
                drop(sessions);
                tracing::debug!("qtalk server: a session arrived while shutting down; closed");
                session.close();
                return;
            }
            if sessions.list.len() >= sessions.prune_at {
                sessions.list.retain(|s| !s.is_closed());
                sessions.prune_at = (2 * sessions.list.len()).max(64);
            }
            sessions.list.push(session.clone());
        }
        let handler = match &self.handlers {
            Handlers::Shared(h) => h.clone(),
            Handlers::PerSession(make) => make(&session),
        };
        let serving = Arc::new(Serving {
            handler,
            caller: Caller::with_options(session, self.codec.clone(), (*self.options).clone()),
            options: self.options.clone(),
            tracker: self.tracker.clone(),
            draining: self.draining.clone(),
            channels: None,
            calls: Some(self.call_limit.clone()),
        });
        let serve = serve_session(serving, self.stop.clone());
        let sessions = self.session_limit.clone();
        tokio::spawn(async move {
            let _permit = match permit {
                Some(p) => p,
                None => sessions.acquire().await,
            };
            serve.await;
        });
    }

    /// Shuts down gracefully: stops accepting sessions; calls that arrive from now on are
    /// refused (the caller reads [`SHUTTING_DOWN`](crate::rpc::SHUTTING_DOWN), see
    /// [`Error::is_shutting_down`](crate::rpc::Error::is_shutting_down)); calls in flight may
    /// finish for up to `grace`; then every session is closed.
    pub async fn shutdown(&self, grace: Duration) {
        self.draining.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(grace, self.tracker.wait()).await;
        self.stop.cancel();
        let sessions =
            std::mem::take(&mut self.sessions.lock().unwrap_or_else(|p| p.into_inner()).list);
        for s in sessions {
            s.close();
        }
    }

    /// Stops at once: no more sessions or calls are accepted, and every session is closed
    /// (calls in flight end with it). Use [`Server::shutdown`] to let them finish.
    pub fn close(&self) {
        self.draining.cancel();
        self.stop.cancel();
        let sessions =
            std::mem::take(&mut self.sessions.lock().unwrap_or_else(|p| p.into_inner()).list);
        for s in sessions {
            s.close();
        }
    }

    /// Calls in flight right now: those whose header arrived and that have not ended (a channel
    /// still waiting for its header, such as a caller's spare, is not a call yet).
    pub fn calls_in_flight(&self) -> usize {
        self.call_limit.in_use()
    }
}
