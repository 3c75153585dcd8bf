//! Serving one session: every channel its peer opens is a call, read (header first), checked,
//! and run on its own task. Shared by [`Peer`](crate::rpc::Peer) and
//! [`Server`](crate::rpc::Server).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::rpc::frame::FrameReader;
use crate::rpc::io::{CallReader, CallWriter};
use crate::rpc::options::BadCall;
use crate::rpc::respond_mux::clean_selector_cow;
use crate::rpc::responder::{respond_fallback, CallState};
use crate::rpc::service::panic_message;
use crate::rpc::{
    Call, CallContext, CallHeader, Caller, Error, Handler, Options, Responder, SHUTTING_DOWN,
};

/// A limit shared by the sessions of a [`Server`](crate::rpc::Server): a semaphore, and whether the last attempt
/// found it exhausted (so that reaching it is logged once, not once per call).
pub(crate) struct Limit {
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
    saturated: AtomicBool,
}

impl Limit {
    pub(crate) fn new(what: &'static str, max: usize) -> Arc<Limit> {
        Arc::new(Limit {
            what,
            max,
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            saturated: AtomicBool::new(false),
        })
    }

    /// A permit if one is free.
    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        let p = self.permits.clone().try_acquire_owned().ok()?;
        self.saturated.store(false, Ordering::Relaxed);
        Some(p)
    }

    /// A permit, waiting (and saying so once) while the limit is reached.
    pub(crate) async fn acquire(&self) -> OwnedSemaphorePermit {
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

impl Limit {
    /// Permits in use.
    pub(crate) fn in_use(&self) -> usize {
        self.max.min(Semaphore::MAX_PERMITS) - self.permits.available_permits()
    }
}

/// What serving one session needs, shared by the tasks of its calls (one clone per call).
pub(crate) struct Serving {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) caller: Caller,
    pub(crate) options: Arc<Options>,
    /// Counts the calls that run (from their header on), for a graceful shutdown.
    pub(crate) tracker: TaskTracker,
    /// Cancelled when shutting down: calls arriving from then on are refused.
    pub(crate) draining: CancellationToken,
    /// Counts the tasks serving the session's channels, from before their header is read,
    /// so that what a peer sent before it left can be waited for (see `Peer::shutdown`);
    /// `None` where nothing waits for them (a server's sessions).
    pub(crate) channels: Option<TaskTracker>,
    /// The server's call limit (none for a peer).
    pub(crate) calls: Option<Arc<Limit>>,
}

/// Serves every channel the peer of `serving`'s session opens as a call to its handler, one
/// task per call, until the session ends or `stop` is cancelled.
pub(crate) async fn serve_session(serving: Arc<Serving>, stop: CancellationToken) {
    let session = serving.caller.session().clone();
    let watch = Arc::new(HeaderWatch::default());
    // The header waits are timed in ticks of one timer, armed while any is in progress.
    let period = (serving.options.header_timeout / 2).max(Duration::from_millis(1));
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
        let call = respond_call(ch, serving.clone(), waiting);
        match &serving.channels {
            Some(channels) => drop(channels.spawn(call)),
            None => drop(tokio::spawn(call)),
        }
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
/// header arrives nothing has started: the session no longer served (the server stopped, the
/// peer dropped) ends the wait, and the channel is let go. A call whose header arrives while
/// shutting down is refused. With a call limit, the call holds a permit from its header on;
/// at the limit it waits for one (its arguments wait in the channel's window, so the caller
/// is slowed down, and other sessions keep their calls).
async fn respond_call(ch: qtalk_mux::Channel, serving: Arc<Serving>, waiting: HeaderWait) {
    let channel = ch.id();
    let options = serving.options.clone();
    let codec = serving.caller.codec().clone();
    let (mut r, w) = ch.into_split();
    let mut reader = FrameReader::new(options.max_frame);
    let watch = waiting.watch.clone();
    let header = {
        let read = reader.receive::<CallHeader, _>(&*codec, &mut r);
        tokio::pin!(read);
        waiting.run(read).await
    };
    let header = match header {
        Ok(Ok(h)) if h.meta.size() > options.max_metadata => Err(Error::MetadataTooLarge {
            size: h.meta.size(),
            max: options.max_metadata,
        }),
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e @ (Error::Codec(_) | Error::FrameTooLarge { .. }))) => Err(e),
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
    let header = match header {
        Ok(h) => h,
        Err(e) => {
            // The reference never answers here and its caller hangs; answer with the error.
            tracing::debug!(channel = %channel, error = %e, "rpc: bad call header");
            let msg = format!("bad call header: {e}");
            // The rare paths are boxed, so that the task of every call stays small.
            Box::pin(respond_fallback(CallWriter::Channel(w), &*codec, Some(msg))).await;
            // After the answer is queued: a hook that closes the session still delivers it.
            if let Some(hook) = &options.on_bad_call {
                hook(&BadCall::new(serving.caller.session(), channel, &e));
            }
            return;
        }
    };
    // Counted before the check, so that a shutdown waits for every call that passed it.
    let running = serving.tracker.token();
    if serving.draining.is_cancelled() {
        drop(running);
        tracing::debug!(channel = %channel, "rpc: refusing a call while shutting down");
        let refuse = respond_fallback(
            CallWriter::Channel(w),
            &*codec,
            Some(SHUTTING_DOWN.to_string()),
        );
        Box::pin(refuse).await;
        return;
    }
    let _permit = match &serving.calls {
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
    let CallHeader {
        selector,
        meta,
        deadline,
    } = header;
    let context = CallContext::from_wire(meta, deadline);
    let selector = match clean_selector_cow(&selector) {
        std::borrow::Cow::Borrowed(_) => selector,
        std::borrow::Cow::Owned(clean) => clean,
    };
    // A callback registered on this session answers before the shared handler.
    let handler = match serving.caller.callbacks().lookup(&selector) {
        Some(h) => h,
        None => serving.handler.clone(),
    };
    let deadline = context.deadline();
    let span = tracing::debug_span!("rpc call", selector = %selector, channel = %channel);
    async move {
        let slot = CallState::new(CallWriter::Channel(w), codec.clone());
        let responder = Responder::new(slot.clone());
        let call = Call::new(
            selector,
            serving.caller.clone(),
            context,
            reader,
            CallReader::Channel(r),
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
                let answer = crate::rpc::context::unanswered_error(deadline);
                tracing::debug!(?answer, "rpc: handler returned without answering");
                Box::pin(respond_fallback(w, &*codec, answer)).await;
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
        drop(running);
    }
    .instrument(span)
    .await
}
