//! The tokio driver: one reader task and one writer task per session around the sans-IO
//! [`qtalk_mux_proto::Session`].

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;

use qtalk_mux_proto::{ChannelError, ChannelId, Event, OpenStart, OpenStatus, OpenTicket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{ChannelBackend, SessionBackend};
use crate::channel::{Channel, Handle};
use crate::config::Config;
use crate::error::Error;
use crate::output::Output;
use crate::recycle::Recycler;

/// Largest amount of queued frames written inline by the task that queued them.
const INLINE_MAX: usize = 16 * 1024;
/// Inline writes are used only while at most this many channels hold an id.
const INLINE_MAX_CHANNELS: usize = 4;
/// Read buffer size between frames.
const READ_CHUNK: usize = 64 * 1024;
/// Largest single read while inside a big DATA payload.
const READ_MAX: usize = 1024 * 1024;
/// The rest of a DATA payload at least this long is read into a buffer of its own.
const PAYLOAD_OWN_MIN: usize = 16 * 1024;

/// A qmux session: many flow-controlled [`Channel`]s over one byte stream.
///
/// Either side may [`open`](Session::open) channels and [`accept`](Session::accept) the
/// peer's. The handle is cheap to clone; the session runs until [`close`](Session::close) is
/// called, the transport ends, the peer breaks the protocol, or the last handle (every clone
/// of the `Session` and every [`Channel`]) is dropped, which closes it as `close` does.
/// [`wait`](Session::wait) reports why it ended.
///
/// Over qmux a session runs two tasks, spawned by [`Session::new`]: a reader (it reads the
/// transport and refuses channels not accepted in time) and a writer (it writes what the
/// handles queue, unless a write path wrote it inline, and shuts the transport down at the
/// end). Both end when the session ends. Over QUIC, quinn runs the connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), qtalk_mux::Error> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let client = qtalk_mux::Session::new(a, qtalk_mux::Config::default());
/// let server = qtalk_mux::Session::new(b, qtalk_mux::Config::default());
///
/// tokio::spawn(async move {
///     let mut ch = server.accept().await.unwrap();
///     let mut msg = String::new();
///     ch.read_to_string(&mut msg).await.unwrap();
///     ch.write_all(msg.to_uppercase().as_bytes()).await.unwrap();
/// });
///
/// let mut ch = client.open().await?;
/// ch.write_all(b"hello").await?;
/// ch.close_write()?;
/// let mut reply = String::new();
/// ch.read_to_string(&mut reply).await?;
/// assert_eq!(reply, "HELLO");
/// client.close();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    backend: SessionBackend,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = self.backend.name();
        f.debug_struct("Session")
            .field("base", &base)
            .field("ended", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// What the application's handles (sessions and channels) hold of a qmux session: when the
/// last one goes, the session closes as by [`Session::close`] (the tasks, which hold only
/// [`Shared`], flush what is queued, shut the transport down and end).
pub(crate) struct Owner {
    shared: Arc<Shared>,
}

impl std::ops::Deref for Owner {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        close_mux(&self.shared);
    }
}

pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// The transport's writing side; lock order is `out` before `inner` (code holding `inner`
    /// only ever `try_lock`s `out`).
    out: Mutex<Output>,
    /// Wakes the writer task: frames to send, or an accept deadline changed.
    writer: Notify,
    /// Cancelled when the session ends, for whatever reason.
    ended: CancellationToken,
    /// Cancelled once both tasks have exited and the transport is closed.
    finished: CancellationToken,
    config: Config,
}

#[derive(Default)]
struct ChannelWakers {
    read: Option<Waker>,
    write: Option<Waker>,
    open: Option<Waker>,
    /// Waits for the peer's CLOSE ([`crate::channel::WriteHalf::peer_closed`]).
    closed: Option<Waker>,
}

pub(crate) struct Inner {
    pub(crate) proto: qtalk_mux_proto::Session,
    wakers: Vec<ChannelWakers>,
    /// Incoming channels not yet taken by `accept`: id, deadline, and whether it was already
    /// confirmed (done at once when an acceptor is waiting, saving it a round of wake-ups).
    accept_queue: VecDeque<(ChannelId, Instant, bool)>,
    accept_wakers: Vec<Waker>,
    /// Deadlines of the peer's OPENs waiting unconfirmed: those counted before the first
    /// number (see `opens_received`) are refused at the deadline beside it.
    waiting_deadlines: VecDeque<(u64, Instant)>,
    /// Our queued opens: the waiting task, and the channel once the open started.
    queued_opens: HashMap<OpenTicket, (Option<Waker>, Option<ChannelId>)>,
    /// Writers held back because the send buffer is full.
    buffer_wakers: Vec<Waker>,
    /// Wakers to call once the lock is released.
    to_wake: Vec<Waker>,
    /// Frames taken out at close, for the writer's last flush.
    final_frames: Vec<Bytes>,
    error: Option<Error>,
}

fn push_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

fn push_waker_list(list: &mut Vec<Waker>, cx: &Context<'_>) {
    if !list.iter().any(|w| w.will_wake(cx.waker())) {
        list.push(cx.waker().clone());
    }
}

impl Inner {
    fn wakers(&mut self, id: ChannelId) -> &mut ChannelWakers {
        let i = id.get() as usize;
        if self.wakers.len() <= i {
            self.wakers.resize_with(i + 1, ChannelWakers::default);
        }
        &mut self.wakers[i]
    }

    pub(crate) fn register_read(&mut self, id: ChannelId, cx: &Context<'_>) {
        push_waker(&mut self.wakers(id).read, cx);
    }

    pub(crate) fn register_closed(&mut self, id: ChannelId, cx: &Context<'_>) {
        push_waker(&mut self.wakers(id).closed, cx);
    }

    pub(crate) fn register_write(&mut self, id: ChannelId, cx: &Context<'_>) {
        push_waker(&mut self.wakers(id).write, cx);
        if self.proto.unsent() >= self.proto.config().send_buffer() {
            push_waker_list(&mut self.buffer_wakers, cx);
        }
    }

    /// Turns protocol events into wake-ups.
    fn dispatch(&mut self, accept_timeout: Duration) {
        while let Some(ev) = self.proto.poll_event() {
            let w = match ev {
                Event::Incoming(id) => {
                    let confirmed = !self.accept_wakers.is_empty() && self.proto.accept(id).is_ok();
                    self.accept_queue
                        .push_back((id, Instant::now() + accept_timeout, confirmed));
                    self.to_wake.append(&mut self.accept_wakers);
                    continue;
                }
                Event::OpenReply(id) => self.wakers(id).open.take(),
                Event::OpenStarted(t, id) => match self.queued_opens.get_mut(&t) {
                    Some(entry) => {
                        entry.1 = Some(id);
                        entry.0.take()
                    }
                    // Its opener went away in between: nobody wants the channel.
                    None => {
                        self.proto.release(id);
                        None
                    }
                },
                Event::Readable(id) => {
                    // A CLOSE is announced as readable: whoever waits for it re-checks.
                    let w = self.wakers(id);
                    let closed = w.closed.take();
                    let read = w.read.take();
                    self.to_wake.extend(closed);
                    read
                }
                Event::Writable(id) => self.wakers(id).write.take(),
                _ => None,
            };
            if let Some(w) = w {
                self.to_wake.push(w);
            }
        }
    }

    /// Ends the session with `err` (unless it already ended) and wakes everyone.
    fn end(&mut self, err: Error) {
        if self.error.is_some() {
            return;
        }
        tracing::debug!(cause = %err, "qmux session ended");
        self.error = Some(err);
        self.proto.terminate();
        for w in self.wakers.iter_mut() {
            self.to_wake.extend(w.read.take());
            self.to_wake.extend(w.write.take());
            self.to_wake.extend(w.open.take());
            self.to_wake.extend(w.closed.take());
        }
        self.to_wake.append(&mut self.accept_wakers);
        self.to_wake.append(&mut self.buffer_wakers);
        for (w, _) in self.queued_opens.values_mut() {
            self.to_wake.extend(w.take());
        }
    }

    pub(crate) fn session_error(&self) -> Error {
        self.error.clone().unwrap_or(Error::Closed)
    }

    /// Maps a channel operation error to what the application sees.
    pub(crate) fn channel_error(&self, e: ChannelError) -> io::Error {
        match e {
            ChannelError::SessionEnded => self.session_error().into(),
            ChannelError::Closed | ChannelError::WriteClosed => {
                io::Error::new(io::ErrorKind::BrokenPipe, e)
            }
            ChannelError::UnknownChannel | ChannelError::NotOpen => {
                io::Error::new(io::ErrorKind::NotConnected, e)
            }
            _ => io::Error::other(e),
        }
    }
}

/// A locked view of the session state. Releasing it (dropping it, or [`Locked::flush`])
/// turns protocol events into wake-ups and fires them once unlocked. Dropping never writes:
/// frames it finds queued are left to the writer task. Write paths call [`Locked::flush`]
/// instead, which writes small amounts inline when the transport is idle (saving a task
/// wake-up per exchange).
pub(crate) struct Locked<'a> {
    guard: Option<MutexGuard<'a, Inner>>,
    shared: &'a Shared,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.guard.as_ref().expect("locked")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.guard.as_mut().expect("locked")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.release(false);
    }
}

impl Locked<'_> {
    /// Unlocks, writing the frames queued so far from this task when they are few and the
    /// transport is idle, else waking the writer task for them. Only the session's write
    /// paths (channel writes and closes, opens, accepts, the reader's replies) call it.
    pub(crate) fn flush(mut self) {
        self.release(true);
    }

    fn release(&mut self, inline: bool) {
        let Some(mut g) = self.guard.take() else {
            return;
        };
        g.dispatch(self.shared.config.accept_timeout);
        let mut wake = std::mem::take(&mut g.to_wake);
        if g.proto.has_transmit() && !inline {
            drop(g);
            self.shared.writer.notify_one();
        } else if g.proto.has_transmit() {
            // With few channels busy, small writes (control frames, rpc messages) go out from
            // this task at once, saving a task wake-up per exchange. Bulk data written from a
            // task, and traffic of many channels, is left to the writer task: frames of many
            // channels then share one vectored write.
            // Bulk data written from outside the runtime's tasks (a `block_on` future, such as
            // `#[tokio::main]`'s) also goes out inline: waking the writer task from there costs
            // a hop to another thread per write. From a task, the woken writer runs next on
            // the same thread and batches what the task queued meanwhile.
            let small = (g.proto.unsent() <= INLINE_MAX || tokio::task::try_id().is_none())
                && g.proto.channel_count() <= INLINE_MAX_CHANNELS;
            let out = if small {
                self.shared.out.try_lock().ok()
            } else {
                None
            };
            match out {
                // The transport is idle (the writer task waits on nothing): write from this
                // task instead of waking the writer. Polling with a no-op waker is harmless
                // only then, as it would replace a waiting writer's registration.
                Some(mut out) if out.is_idle() => {
                    g.proto.poll_transmit(&mut out.pending);
                    drop(g);
                    let mut cx = Context::from_waker(Waker::noop());
                    let (written, res) = out.write_some(&mut cx);
                    drop(out);
                    if written > 0 {
                        self.shared.transmitted(written, &mut wake);
                    }
                    if !matches!(res, Poll::Ready(Ok(()))) {
                        // Full transport or an error: the writer task takes over.
                        self.shared.writer.notify_one();
                    }
                }
                busy => {
                    // Busy or not ours to use: let go of it before waking its user.
                    drop(busy);
                    drop(g);
                    self.shared.writer.notify_one();
                }
            }
        } else {
            drop(g);
        }
        for w in wake {
            w.wake();
        }
    }
}

impl Shared {
    /// Accounts `n` bytes as written and collects writers waiting for send-buffer room.
    fn transmitted(&self, n: usize, wake: &mut Vec<Waker>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.proto.on_transmitted(n);
        wake.append(&mut inner.buffer_wakers);
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Locked {
            guard: Some(guard),
            shared: self,
        }
    }
}

impl Session {
    /// Runs a session over a duplex byte stream (split internally).
    ///
    /// Must be called within a tokio runtime: it spawns the session's reader and writer tasks.
    pub fn new<T>(io: T, config: Config) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        Session::from_split(r, w, config)
    }

    /// Runs a session over a separate reader and writer (pipes, stdio, split sockets).
    ///
    /// Must be called within a tokio runtime: it spawns the session's reader and writer tasks.
    pub fn from_split<R, W>(reader: R, writer: W, config: Config) -> Session
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + 'static,
    {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                proto: qtalk_mux_proto::Session::new(config.proto.clone()),
                wakers: Vec::new(),
                accept_queue: VecDeque::new(),
                accept_wakers: Vec::new(),
                waiting_deadlines: VecDeque::new(),
                queued_opens: HashMap::new(),
                buffer_wakers: Vec::new(),
                to_wake: Vec::new(),
                final_frames: Vec::new(),
                error: None,
            }),
            out: Mutex::new(Output::new(writer)),
            writer: Notify::new(),
            ended: CancellationToken::new(),
            finished: CancellationToken::new(),
            config,
        });
        let reader_done = CancellationToken::new();
        tokio::spawn(read_loop(shared.clone(), reader, reader_done.clone()));
        tokio::spawn(write_loop(shared.clone(), reader_done));
        Session {
            backend: SessionBackend::Mux(Arc::new(Owner { shared })),
        }
    }

    /// A session over another base layer (see `backend.rs`).
    #[cfg(feature = "quic")]
    pub(crate) fn from_backend(backend: SessionBackend) -> Session {
        Session { backend }
    }

    /// The configuration this session runs with.
    pub fn config(&self) -> &Config {
        self.backend.config()
    }

    /// Opens a channel and waits for the peer to confirm it.
    ///
    /// Fails with [`Error::OpenRefused`] when the peer refuses, or with the session's error when
    /// it ends first. Cancel-safe: dropping the future abandons the open, and a late
    /// confirmation is answered with CLOSE. See [`Session::open_timeout`] for a deadline.
    ///
    /// Over QUIC there is no confirmation: the stream is opened (waiting while the peer's
    /// stream limit is reached) and announced to the peer at once.
    pub async fn open(&self) -> Result<Channel, Error> {
        tokio::time::timeout(self.config().open_timeout, self.backend.open())
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// [`Session::open`] with a deadline: [`Error::Timeout`] when the peer has not answered in
    /// time.
    pub async fn open_timeout(&self, timeout: Duration) -> Result<Channel, Error> {
        tokio::time::timeout(timeout, self.open())
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// Waits for the next channel opened by the peer; `None` once the session has ended (after
    /// handing out the channels already confirmed to the peer, whose data stays readable).
    ///
    /// Channels not accepted within the configured accept timeout are refused, without holding
    /// up other channels.
    pub async fn accept(&self) -> Option<Channel> {
        self.backend.accept().await
    }

    /// Ends the session: frames already queued are still delivered (for up to the configured
    /// close timeout), then the transport is closed. Pending operations fail with
    /// [`Error::Closed`]. No frame announces the end, as in the reference.
    ///
    /// Over QUIC the connection is closed with application error code 42 and reason
    /// `close connection`, as the reference does, once the peer has acknowledged the data of
    /// the channels already finished or dropped (for up to the close timeout).
    pub fn close(&self) {
        self.backend.close()
    }

    /// Waits until the session has ended and its transport is closed, and returns why it
    /// ended: [`Error::PeerClosed`] when the peer went away cleanly, [`Error::Closed`] after
    /// [`Session::close`]. Never returns success.
    pub async fn wait(&self) -> Error {
        self.backend.wait().await
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.backend.is_closed()
    }

    /// True when [`Session::open`] waits a round trip for the peer's confirmation (qmux);
    /// false when a channel opens at once (QUIC). Callers that open channels ahead of need
    /// (see qtalk's spare channels) only gain where it waits.
    pub fn open_needs_round_trip(&self) -> bool {
        self.backend.open_needs_round_trip()
    }

    /// Number of channels holding an id (opening, open, or closing); over QUIC, the channels
    /// this side holds.
    pub fn channel_count(&self) -> usize {
        self.backend.channel_count()
    }
}

impl Owner {
    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.shared.ended.is_cancelled()
    }
}

/// [`Session::wait`] of a qmux session.
pub(crate) async fn wait_mux(owner: &Owner) -> Error {
    owner.finished.cancelled().await;
    owner.lock().session_error()
}

pub(crate) async fn open_mux(shared: &Arc<Owner>) -> Result<Channel, Error> {
    let start = {
        let mut inner = shared.lock();
        match inner.proto.open() {
            Ok(start) => {
                if let OpenStart::Queued(ticket) = start {
                    // Noted under the same lock, so that the open starting before this task
                    // polls again finds its entry (and is not taken as abandoned).
                    inner.queued_opens.insert(ticket, (None, None));
                }
                inner.flush();
                start
            }
            Err(_) => return Err(inner.session_error()),
        }
    };
    let id = match start {
        OpenStart::Started(id) => id,
        OpenStart::Queued(ticket) => {
            // At the channel limit or out of budget: wait for a slot, in order.
            let mut queued = QueuedOpen {
                shared,
                ticket: Some(ticket),
            };
            poll_fn(|cx| {
                let mut inner = shared.lock();
                if inner.error.is_some() {
                    return Poll::Ready(Err(inner.session_error()));
                }
                let Some(entry) = inner.queued_opens.get_mut(&ticket) else {
                    // Gone only when the session ended (see `end`).
                    return Poll::Ready(Err(inner.session_error()));
                };
                if let Some(id) = entry.1 {
                    inner.queued_opens.remove(&ticket);
                    queued.ticket = None;
                    return Poll::Ready(Ok(id));
                }
                push_waker(&mut entry.0, cx);
                Poll::Pending
            })
            .await?
        }
    };
    let mut pending = PendingOpen {
        shared,
        id: Some(id),
    };
    poll_fn(|cx| {
        let mut inner = shared.lock();
        match inner.proto.open_status(id) {
            Ok(OpenStatus::Pending) => {
                push_waker(&mut inner.wakers(id).open, cx);
                Poll::Pending
            }
            Ok(OpenStatus::Confirmed) => {
                pending.id = None;
                Poll::Ready(Ok(Channel::from_backend(ChannelBackend::Mux(Handle {
                    shared: shared.clone(),
                    id,
                }))))
            }
            Ok(OpenStatus::Refused) => Poll::Ready(Err(Error::OpenRefused)),
            Err(_) => Poll::Ready(Err(inner.session_error())),
        }
    })
    .await
}

pub(crate) async fn accept_mux(shared: &Arc<Owner>) -> Option<Channel> {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        let ended = inner.error.is_some();
        while let Some((id, _, confirmed)) = inner.accept_queue.pop_front() {
            // A channel already confirmed is the application's even when the session ended
            // before it was taken: the peer may have sent data (and EOF) on it, all readable.
            if confirmed {
                return Poll::Ready(Some(Channel::from_backend(ChannelBackend::Mux(Handle {
                    shared: shared.clone(),
                    id,
                }))));
            }
            if !ended && inner.proto.accept(id).is_ok() {
                inner.flush();
                return Poll::Ready(Some(Channel::from_backend(ChannelBackend::Mux(Handle {
                    shared: shared.clone(),
                    id,
                }))));
            }
        }
        if ended {
            return Poll::Ready(None);
        }
        push_waker_list(&mut inner.accept_wakers, cx);
        Poll::Pending
    })
    .await
}

pub(crate) fn close_mux(shared: &Shared) {
    let mut inner = shared.lock();
    if inner.error.is_some() {
        return;
    }
    let mut frames = Vec::new();
    inner.proto.poll_transmit(&mut frames);
    inner.final_frames = frames;
    inner.end(Error::Closed);
    drop(inner);
    shared.ended.cancel();
}

/// Gives up a queued open when the future is dropped.
struct QueuedOpen<'a> {
    shared: &'a Shared,
    ticket: Option<OpenTicket>,
}

impl Drop for QueuedOpen<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let mut inner = self.shared.lock();
            let started = inner.queued_opens.remove(&t).and_then(|(_, id)| id);
            if !inner.proto.cancel_open(t) {
                if let Some(id) = started {
                    inner.proto.release(id);
                }
            }
        }
    }
}

/// Abandons an unfinished open when the future is dropped.
struct PendingOpen<'a> {
    shared: &'a Shared,
    id: Option<ChannelId>,
}

impl Drop for PendingOpen<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.lock().proto.release(id);
        }
    }
}

fn end_session(shared: &Shared, err: Error) {
    shared.lock().end(err);
    shared.ended.cancel();
}

async fn read_loop<R>(shared: Arc<Shared>, mut reader: R, done: CancellationToken)
where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::new();
    let linger = shared.config.read_buffer_idle;
    // Kept buffers hold at most two windows' worth: what one channel may have in flight.
    let keep = if linger.is_zero() {
        0
    } else {
        2 * shared.config.proto.window() as usize
    };
    let mut recycler = Recycler::new(keep);
    recycler.replace(&mut buf, READ_CHUNK);
    let mut want = READ_CHUNK;
    // The earliest accept deadline. Incoming channels appear only while this task handles
    // input, so it enforces their deadlines itself, with no wake-up of another task per open.
    // One timer, re-armed only when it fires (queued deadlines only grow), so busy sessions do
    // not touch the timer wheel per read.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed = false;
    // Frees the kept receive buffers once bulk data stopped for `linger`; made only while
    // some are kept (an idle session holds none), and re-armed once per `linger` while they
    // are in use.
    let mut idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    // Bytes still to come of the DATA payload being received (as of the last input).
    let mut payload = 0;
    // Between the frames of bulk data, a read takes a whole frame at once: header and
    // payload in one buffer, one system call.
    let bulk_want = (shared.config.proto.max_packet() as usize).clamp(READ_CHUNK, READ_MAX);
    loop {
        let own = buf.is_empty() && payload >= PAYLOAD_OWN_MIN;
        if own {
            // Inside a large DATA payload: read the rest of it into a buffer of its own, so
            // that the slices handed to the channel pin nothing of other frames (what a peer
            // makes a session hold stays close to what it sent).
            let exact = payload.min(READ_MAX);
            if buf.capacity() != exact {
                recycler.replace(&mut buf, exact);
            }
        } else if buf.capacity() - buf.len() < want / 2 {
            if buf.is_empty() {
                recycler.replace(&mut buf, want);
            } else {
                buf.reserve(want);
                recycler.forget();
            }
        }
        if recycler.holds() && idle.is_none() {
            idle = Some(Box::pin(tokio::time::sleep(linger)));
        }
        let read = tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            r = reader.read_buf(&mut buf) => Some(r),
            _ = &mut timer, if armed => None,
            _ = async {
                match idle.as_mut() {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            }, if idle.is_some() => {
                recycler.idle();
                idle = None;
                continue;
            }
        };
        let mut inner = shared.lock();
        let Some(read) = read else {
            expire_accepts(&mut inner);
            armed = false;
            if let Some(d) = next_deadline(&inner) {
                timer.as_mut().reset(d);
                armed = true;
            }
            continue;
        };
        match read {
            Ok(0) => {
                let cause = match inner.proto.handle_eof(&buf) {
                    Ok(()) => Error::PeerClosed,
                    Err(e) => e.into(),
                };
                inner.end(cause);
                drop(inner);
                shared.ended.cancel();
                break;
            }
            Ok(n) => {
                if let Err(e) = inner.proto.handle_input(&mut buf) {
                    tracing::debug!(error = %e, "qmux protocol error");
                    inner.end(e.into());
                    drop(inner);
                    shared.ended.cancel();
                    break;
                }
                payload = inner.proto.payload_remaining();
                want = if payload == 0 && (own || n >= READ_CHUNK) {
                    bulk_want
                } else {
                    payload.clamp(READ_CHUNK, READ_MAX)
                };
                // Queue what arrived now, to see its deadlines (dropping the lock would too).
                inner.dispatch(shared.config.accept_timeout);
                note_waiting_opens(&mut inner, shared.config.accept_timeout);
                if !armed {
                    if let Some(d) = next_deadline(&inner) {
                        timer.as_mut().reset(d);
                        armed = true;
                    }
                }
                // The replies the input called for (confirmations, CLOSE answers) leave now.
                inner.flush();
            }
            Err(e) => {
                let cause = if e.kind() == io::ErrorKind::ConnectionReset {
                    Error::PeerClosed
                } else {
                    e.into()
                };
                inner.end(cause);
                drop(inner);
                shared.ended.cancel();
                break;
            }
        }
    }
    drop(reader);
    done.cancel();
}

/// Takes frames from the protocol state and writes them until none are left or the
/// transport is full (then `Pending`, registered with `cx`).
fn poll_drain(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut wake = Vec::new();
    let res = {
        let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if out.pending.is_empty() {
                let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
                inner.proto.poll_transmit(&mut out.pending);
                drop(inner);
                if out.pending.is_empty() && !out.unflushed {
                    break Poll::Ready(Ok(()));
                }
            }
            let (written, res) = out.write_some(cx);
            if written > 0 {
                shared.transmitted(written, &mut wake);
            }
            match res {
                Poll::Ready(Ok(())) => {}
                other => break other,
            }
        }
    };
    for w in wake {
        w.wake();
    }
    res
}

async fn write_loop(shared: Arc<Shared>, reader_done: CancellationToken) {
    loop {
        let res = tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            r = poll_fn(|cx| poll_drain(&shared, cx)) => r,
        };
        if let Err(e) = res {
            // A peer that closed the connection breaks our writes: that is its going away,
            // whichever of the reader and the writer notices first.
            let cause = match e.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::PeerClosed,
                _ => e.into(),
            };
            end_session(&shared, cause);
            break;
        }
        tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            _ = shared.writer.notified() => {}
        }
        // With many channels busy, let the tasks woken with this one queue their frames too,
        // so that one write carries them all (a lone bulk writer gains nothing by waiting).
        let many = shared
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .proto
            .channel_count()
            > INLINE_MAX_CHANNELS;
        if many {
            tokio::task::yield_now().await;
        }
    }
    // After a local close, deliver what was queued (the rest of an interrupted write first),
    // then close the transport. After any other end, just close it.
    let (closed_locally, last) = {
        let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
        let last = std::mem::take(&mut inner.final_frames);
        (matches!(inner.error, Some(Error::Closed)), last)
    };
    let flush = poll_fn(|cx| {
        let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
        if closed_locally {
            if !last.is_empty() && !out.closed {
                out.pending.extend(last.iter().cloned());
                out.closed = true; // no more inline writes
            }
            match out.write_some(cx).1 {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        out.closed = true;
        out.pending.clear();
        out.poll_shutdown(cx)
    });
    let _ = tokio::time::timeout(shared.config.close_timeout, flush).await;
    shared
        .out
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .release();
    reader_done.cancelled().await;
    shared.finished.cancel();
}

/// Notes a deadline for the peer's OPENs that arrived waiting in the last input.
fn note_waiting_opens(inner: &mut Inner, timeout: Duration) {
    if inner.proto.opens_waiting() == 0 {
        inner.waiting_deadlines.clear();
        return;
    }
    let received = inner.proto.opens_received();
    if inner
        .waiting_deadlines
        .back()
        .is_none_or(|&(n, _)| n < received)
    {
        inner
            .waiting_deadlines
            .push_back((received, Instant::now() + timeout));
    }
}

/// The earliest accept deadline, of a channel waiting for accept or an OPEN waiting unconfirmed.
fn next_deadline(inner: &Inner) -> Option<Instant> {
    let a = inner.accept_queue.front().map(|&(_, d, _)| d);
    let w = inner.waiting_deadlines.front().map(|&(_, d)| d);
    match (a, w) {
        (Some(a), Some(w)) => Some(a.min(w)),
        (a, w) => a.or(w),
    }
}

/// Refuses incoming channels that waited too long for accept (closes those confirmed early
/// whose acceptor went away), and the peer's OPENs that waited too long unconfirmed.
fn expire_accepts(inner: &mut Inner) {
    let now = Instant::now();
    while let Some(&(received, deadline)) = inner.waiting_deadlines.front() {
        if deadline > now {
            break;
        }
        inner.waiting_deadlines.pop_front();
        if inner.proto.opens_waiting() > 0 {
            tracing::debug!("qmux: incoming OPENs waited too long unconfirmed");
        }
        inner.proto.refuse_waiting(received);
    }
    while let Some(&(id, deadline, confirmed)) = inner.accept_queue.front() {
        if deadline > now {
            break;
        }
        inner.accept_queue.pop_front();
        tracing::debug!(
            channel = id.get(),
            "qmux: incoming channel not accepted in time"
        );
        if confirmed {
            inner.proto.release(id);
        } else {
            let _ = inner.proto.reject(id);
        }
    }
}
