//! The qmux driver: one reader task and one writer task per session around the sans-IO
//! [`qtalk_mux_proto::Session`].
//!
//! - this file: the state the handles and the tasks share ([`Shared`]: the protocol state and
//!   the wakers under one mutex, the transport's writing side under another), what the
//!   application's handles hold ([`Owner`]), and the start of a session ([`spawn`]);
//! - `locked.rs`: the locked view whose release dispatches events and writes inline;
//! - `ops.rs`: open, accept, close and wait;
//! - `reader.rs`, `writer.rs`: the two tasks;
//! - `output.rs`: the transport's writing side; `recycle.rs`: the reader's kept buffers;
//!   `guard.rs`: panics caught, in the transport and in the tasks.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use qtalk_mux_proto::{ChannelError, ChannelId, Event, OpenTicket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::Error;

mod guard;
mod locked;
mod ops;
mod output;
mod reader;
mod recycle;
mod writer;

pub(crate) use ops::{accept_mux, close_mux, open_mux, wait_mux};
use output::Output;

/// Inline writes are used only while at most this many channels hold an id.
const INLINE_MAX_CHANNELS: usize = 4;

/// What the application's handles (sessions and channels) hold of a qmux session: when the
/// last one goes, the session closes as by [`Session::close`](crate::Session::close) (the tasks, which hold only
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
        if self.proto.send_room(id) == 0 {
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

impl Shared {
    /// Accounts `n` bytes as written and collects writers waiting for send-buffer room.
    fn transmitted(&self, n: usize, wake: &mut Vec<Waker>) {
        let mut inner = self.inner();
        inner.proto.on_transmitted(n);
        wake.append(&mut inner.buffer_wakers);
    }

    /// Locks the protocol state (see [`Shared::lock`] for the view that dispatches events).
    ///
    /// A poisoned lock means a task panicked while it held the state, which may be half
    /// updated: the session ends with [`Error::Panicked`] (everyone waiting is woken with it),
    /// the poison is cleared, and from then on the state serves only to report that error.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        let mut g = match self.inner.lock() {
            Ok(g) => return g,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.inner.clear_poison();
        g.end(Error::Panicked(Arc::from(
            "a task panicked while it held the session state",
        )));
        let wake = std::mem::take(&mut g.to_wake);
        drop(g);
        self.ended.cancel();
        for w in wake {
            w.wake();
        }
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the transport's writing side. Poisoned (a panic while a write was under way,
    /// outside the transport's own code, whose panics are caught), it is released and the
    /// session ends as for a poisoned state.
    fn out(&self) -> MutexGuard<'_, Output> {
        let mut g = match self.out.lock() {
            Ok(g) => return g,
            Err(poisoned) => poisoned.into_inner(),
        };
        self.out.clear_poison();
        g.release();
        let mut inner = self.lock();
        inner.end(Error::Panicked(Arc::from(
            "a task panicked while it wrote to the transport",
        )));
        drop(inner);
        self.ended.cancel();
        g
    }

    /// Ends the session with `err` (unless it already ended) and wakes everyone.
    fn fail(&self, err: Error) {
        self.lock().end(err);
        self.ended.cancel();
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

/// Starts a session over `reader` and `writer`: the shared state, and the reader and writer
/// tasks (which hold only [`Shared`]).
pub(crate) fn spawn<R, W>(reader: R, writer: W, config: Config) -> Arc<Owner>
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
    tokio::spawn(reader_task(shared.clone(), reader, reader_done.clone()));
    tokio::spawn(writer_task(shared.clone(), reader_done));
    Arc::new(Owner { shared })
}

// A panic in a task ends the session as an error would, and the task then does what it would
// have done last: the reader marks itself done; the writer releases the transport, waits for
// the reader and marks the session finished.

async fn reader_task<R: AsyncRead + Unpin>(s: Arc<Shared>, reader: R, done: CancellationToken) {
    let reader = guard::GuardedRead::new(reader);
    let task = std::pin::pin!(Some(reader::read_loop(s.clone(), reader, done.clone())));
    if let Err(m) = guard::catch_panic(task).await {
        s.fail(Error::Panicked(m));
        done.cancel();
    }
}

async fn writer_task(s: Arc<Shared>, reader_done: CancellationToken) {
    let task = std::pin::pin!(Some(writer::write_loop(s.clone(), reader_done.clone())));
    if let Err(m) = guard::catch_panic(task).await {
        s.fail(Error::Panicked(m));
        s.out().release();
        reader_done.cancelled().await;
        s.finished.cancel();
    }
}
