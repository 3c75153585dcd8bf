//! Receiving from a stream without losing what arrives as the waiter is cancelled.
//!
//! A stream (a caller's response, a handler's call) has one [`Recv`]. At most one Rust receive
//! is under way for it at a time, polled on the event loop's thread: when woken, it queues a
//! job on the loop that polls it again. When it completes, its item is queued on the stream
//! and the first waiting receive is woken to take it. A receive cancelled while
//! waiting (`asyncio.wait_for`, `Task.cancel`) leaves its place; the item, when it comes, goes
//! to the next receive. So every value and every byte is delivered once, in order, as with
//! `asyncio.Queue` and `asyncio.StreamReader`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use pyo3::exceptions::{PyEOFError, PyStopAsyncIteration};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use qtalk::Value;
use tokio::sync::{watch, Mutex};

use crate::bridge::{
    is_cancelled, is_done, new_waiter, poll_once, running_queue, runtime, wake_future,
};
use crate::convert::Conv;
use crate::errors::{qtalk_error, Failure};

/// Most bytes one `read` returns (a larger `n` is capped to this).
pub(crate) const MAX_READ: usize = 1 << 20;

/// What a receive asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Want {
    /// The next value; at the end, `EOFError` (`receive`) or `StopAsyncIteration` (`__anext__`).
    Value { iterating: bool },
    /// Up to this many raw bytes; `b""` at the end.
    Bytes(usize),
}

/// One thing received.
pub(crate) enum Item {
    Value(Value),
    /// Raw bytes, in the pieces they arrived in.
    Bytes(VecDeque<Bytes>),
    Eof,
    Err(Failure),
}

/// A stream's receiving side, which `close()` can interrupt (a pending receive then ends).
pub(crate) struct Closable<T> {
    pub(crate) inner: Mutex<Option<T>>,
    pub(crate) closed: watch::Sender<bool>,
}

impl<T> Closable<T> {
    pub(crate) fn new(value: Option<T>) -> Self {
        Closable {
            inner: Mutex::new(value),
            closed: watch::Sender::new(false),
        }
    }

    /// Marks it closed and drops the value now if no one is using it (else the user does).
    pub(crate) fn close(&self) -> Option<T> {
        self.closed.send_replace(true);
        self.inner.try_lock().ok().and_then(|mut g| g.take())
    }
}

/// What can be received from: a response's reader or a handler's call.
pub(crate) trait Reader: Send + 'static {
    fn next_value(
        &mut self,
    ) -> impl Future<Output = Result<Option<Value>, qtalk::rpc::Error>> + Send + '_;
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = std::io::Result<Option<Bytes>>> + Send + '_;
}

impl Reader for qtalk::rpc::ResponseReader {
    fn next_value(
        &mut self,
    ) -> impl Future<Output = Result<Option<Value>, qtalk::rpc::Error>> + Send + '_ {
        self.receive_next::<Value>()
    }
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = std::io::Result<Option<Bytes>>> + Send + '_ {
        self.read_chunk(max)
    }
}

impl Reader for qtalk::rpc::Call {
    fn next_value(
        &mut self,
    ) -> impl Future<Output = Result<Option<Value>, qtalk::rpc::Error>> + Send + '_ {
        self.receive_next::<Value>()
    }
    fn next_chunk(
        &mut self,
        max: usize,
    ) -> impl Future<Output = std::io::Result<Option<Bytes>>> + Send + '_ {
        self.read_chunk(max)
    }
}

type ItemFuture = Pin<Box<dyn Future<Output = Item> + Send>>;

/// Makes the future of one receive.
pub(crate) trait Source: Send + Sync + 'static {
    fn receive(self: Arc<Self>, want: Want) -> ItemFuture;
}

impl<R: Reader> Source for Closable<R> {
    fn receive(self: Arc<Self>, want: Want) -> ItemFuture {
        Box::pin(async move {
            let mut closed = self.closed.subscribe();
            if *closed.borrow() {
                return Item::Eof;
            }
            let mut guard = self.inner.lock().await;
            let Some(reader) = guard.as_mut() else {
                return Item::Eof;
            };
            let item = match want {
                Want::Value { .. } => {
                    tokio::select! {
                        r = reader.next_value() => Some(match r {
                            Ok(Some(v)) => Item::Value(v),
                            Ok(None) => Item::Eof,
                            Err(e) => Item::Err(e.into()),
                        }),
                        _ = closed.wait_for(|c| *c) => None,
                    }
                }
                Want::Bytes(n) => {
                    let n = n.clamp(1, MAX_READ);
                    let first = tokio::select! {
                        r = reader.next_chunk(n) => Some(r),
                        _ = closed.wait_for(|c| *c) => None,
                    };
                    first.map(|r| match r {
                        Ok(Some(b)) => Item::Bytes(gather(reader, b, n)),
                        Ok(None) => Item::Eof,
                        Err(e) => Item::Err(e.into()),
                    })
                }
            };
            match item {
                Some(item) => item,
                None => {
                    *guard = None;
                    Item::Eof
                }
            }
        })
    }
}

/// `first`, and what else of up to `n` bytes in all is received already. (Reading a chunk is
/// cancel-safe: a read that would wait takes nothing.)
fn gather<R: Reader>(reader: &mut R, first: Bytes, n: usize) -> VecDeque<Bytes> {
    let mut got = first.len();
    let mut pieces = VecDeque::from([first]);
    while got < n {
        let mut next = std::pin::pin!(reader.next_chunk(n - got));
        match crate::bridge::poll_now(&mut next) {
            Poll::Ready(Ok(Some(b))) if !b.is_empty() => {
                got += b.len();
                pieces.push_back(b);
            }
            // The end, an error or nothing yet: the next read sees it.
            _ => break,
        }
    }
    pieces
}

/// Wakes a stream's receive under way: queues a job on the loop that polls it again.
struct RecvWaker {
    recv: std::sync::Weak<Recv>,
    queue: Arc<crate::bridge::Queue>,
    /// A job is queued already.
    scheduled: AtomicBool,
}

impl std::task::Wake for RecvWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let recv = self.recv.clone();
        // A closed loop: no one will take it.
        let _ = self.queue.push(Box::new(move |py| {
            if let Some(recv) = recv.upgrade() {
                recv.resume_inflight(py);
            }
        }));
    }
}

struct Waiter {
    id: u64,
    fut: Py<PyAny>,
    want: Want,
}

/// The receive under way, polled on the event loop's thread.
struct InFlight {
    fut: ItemFuture,
    waker: Arc<RecvWaker>,
}

struct RecvState {
    /// Received, not yet taken.
    ready: VecDeque<Item>,
    /// The receive under way, if any (at most one per stream).
    inflight: Option<InFlight>,
    /// Receives waiting, oldest first.
    waiters: VecDeque<Waiter>,
    next_id: u64,
}

/// The receiving queue of one stream.
pub(crate) struct Recv {
    source: Arc<dyn Source>,
    st: StdMutex<RecvState>,
}

impl Recv {
    pub(crate) fn new(source: Arc<dyn Source>) -> Arc<Recv> {
        Arc::new(Recv {
            source,
            st: StdMutex::new(RecvState {
                ready: VecDeque::new(),
                inflight: None,
                waiters: VecDeque::new(),
                next_id: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecvState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls a new receive; what it does not finish at once it finishes when woken (a job on
    /// the loop's queue polls it again there), and its item is queued on the stream.
    fn start_receive(
        self: &Arc<Self>,
        py: Python<'_>,
        st: &mut RecvState,
        fut: ItemFuture,
    ) -> PyResult<()> {
        let (_, queue) = running_queue(py)?;
        let waker = Arc::new(RecvWaker {
            recv: Arc::downgrade(self),
            queue,
            scheduled: AtomicBool::new(false),
        });
        st.inflight = Some(InFlight { fut, waker });
        Recv::poll_inflight(st);
        Ok(())
    }

    /// Polls the receive under way; once it is done, its item is queued.
    fn poll_inflight(st: &mut RecvState) {
        let Some(f) = st.inflight.as_mut() else {
            return;
        };
        f.waker.scheduled.store(false, Ordering::SeqCst);
        let waker = Waker::from(f.waker.clone());
        let _guard = runtime().enter();
        if let Poll::Ready(item) = f.fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            st.inflight = None;
            st.ready.push_back(item);
        }
    }

    /// The receive under way was woken: poll it, and hand on what it brought.
    fn resume_inflight(self: &Arc<Self>, py: Python<'_>) {
        let mut st = self.lock();
        Recv::poll_inflight(&mut st);
        self.pump(py, &mut st);
    }

    /// Hands what is ready to the first waiter, or starts a receive for it.
    fn pump(self: &Arc<Self>, py: Python<'_>, st: &mut RecvState) {
        while st.waiters.front().is_some_and(|w| is_cancelled(py, &w.fut)) {
            st.waiters.pop_front();
        }
        let Some(front) = st.waiters.front() else {
            return;
        };
        if st.ready.is_empty() && st.inflight.is_none() {
            let fut = self.source.clone().receive(front.want);
            // No running loop: the waiter's next resume tries again.
            let _ = self.start_receive(py, st, fut);
        }
        if let (Some(front), false) = (st.waiters.front(), st.ready.is_empty()) {
            wake_future(py, &front.fut);
        }
    }

    /// Takes one item for `want` (splitting bytes beyond `n`).
    fn take(
        st: &mut RecvState,
        py: Python<'_>,
        want: Want,
        conv: &Conv,
    ) -> Option<PyResult<Py<PyAny>>> {
        let item = st.ready.pop_front()?;
        Some(match item {
            Item::Bytes(mut pieces) => {
                let Want::Bytes(n) = want else {
                    return Some(Err(qtalk_error(
                        "raw bytes arrived where a value was expected",
                    )
                    .into_pyerr(py)));
                };
                let n = n.max(1);
                let (out, rest) = split_pieces(&mut pieces, n);
                if !rest.is_empty() {
                    st.ready.push_front(Item::Bytes(rest));
                }
                Ok(bytes_to_py(py, &out).into_any().unbind())
            }
            other => item_to_py(py, other, want, conv),
        })
    }
}

/// The first `n` bytes of `pieces`, and the rest.
fn split_pieces(pieces: &mut VecDeque<Bytes>, n: usize) -> (VecDeque<Bytes>, VecDeque<Bytes>) {
    let mut out = VecDeque::new();
    let mut got = 0;
    while let Some(mut p) = pieces.pop_front() {
        if got + p.len() > n {
            let head = p.split_to(n - got);
            if !head.is_empty() {
                out.push_back(head);
            }
            pieces.push_front(p);
            break;
        }
        got += p.len();
        out.push_back(p);
        if got == n {
            break;
        }
    }
    (out, std::mem::take(pieces))
}

/// One `bytes` holding `pieces` (one copy).
pub(crate) fn bytes_to_py<'py>(py: Python<'py>, pieces: &VecDeque<Bytes>) -> Bound<'py, PyBytes> {
    if pieces.len() == 1 {
        return PyBytes::new(py, &pieces[0]);
    }
    let total: usize = pieces.iter().map(Bytes::len).sum();
    // `PyBytes::new_with` zeroes the buffer before it is filled: a second pass over every
    // byte read. The object is made uninitialized here and filled at once instead.
    let len = pyo3::ffi::Py_ssize_t::try_from(total).expect("a read is at most MAX_READ bytes");
    // SAFETY: a null source asks for an uninitialized bytes object of `len` bytes; it is
    // checked for failure, and owned by the `Bound` made from it.
    let obj = unsafe {
        let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
        Bound::from_owned_ptr_or_err(py, ptr)
    };
    let Ok(obj) = obj else {
        // Out of memory: the slower path raises it properly.
        return PyBytes::new_with(py, total, |_| Ok(()))
            .expect("out of memory making a bytes object");
    };
    // SAFETY: the object was just made, is not shared yet, and holds `total` bytes; every one
    // of them is written below before anyone else sees it.
    unsafe {
        let mut dst = pyo3::ffi::PyBytes_AsString(obj.as_ptr()).cast::<u8>();
        for p in pieces {
            std::ptr::copy_nonoverlapping(p.as_ptr(), dst, p.len());
            dst = dst.add(p.len());
        }
        obj.cast_into_unchecked()
    }
}

fn item_to_py(py: Python<'_>, item: Item, want: Want, conv: &Conv) -> PyResult<Py<PyAny>> {
    match (item, want) {
        (Item::Value(v), Want::Value { .. }) => Ok(conv.to_py(py, &v)?.unbind()),
        (Item::Value(_), Want::Bytes(_)) => {
            Err(qtalk_error("a value arrived where raw bytes were expected").into_pyerr(py))
        }
        (Item::Bytes(p), Want::Bytes(_)) => Ok(bytes_to_py(py, &p).into_any().unbind()),
        (Item::Bytes(_), Want::Value { .. }) => {
            Err(qtalk_error("raw bytes arrived where a value was expected").into_pyerr(py))
        }
        (Item::Eof, Want::Value { iterating: true }) => Err(PyStopAsyncIteration::new_err(())),
        (Item::Eof, Want::Value { iterating: false }) => {
            Err(PyEOFError::new_err("the stream ended"))
        }
        (Item::Eof, Want::Bytes(_)) => Ok(PyBytes::new(py, b"").into_any().unbind()),
        (Item::Err(f), _) => Err(f.into_pyerr(py)),
    }
}

/// A receive not yet started (an [`Op`](crate::bridge::Op) holds it until it is awaited).
pub(crate) struct RecvOp {
    pub(crate) recv: Arc<Recv>,
    pub(crate) want: Want,
    /// Converts values (callbacks are bound to the stream's session).
    pub(crate) conv: Conv,
}

pub(crate) enum Started {
    Ready(PyResult<Py<PyAny>>),
    Wait(Waiting),
}

pub(crate) enum Resumed {
    Ready(PyResult<Py<PyAny>>),
    Wait(Waiting),
}

/// A receive waiting for its turn.
pub(crate) struct Waiting {
    recv: Arc<Recv>,
    id: u64,
    fut: Py<PyAny>,
    want: Want,
    conv: Conv,
}

impl RecvOp {
    pub(crate) fn start(self, py: Python<'_>) -> PyResult<Started> {
        let RecvOp { recv, want, conv } = self;
        let mut st = recv.lock();
        if st.waiters.is_empty() {
            if let Some(v) = Recv::take(&mut st, py, want, &conv) {
                return Ok(Started::Ready(v));
            }
            if st.inflight.is_none() {
                // Received already? Then no thread is involved.
                let mut fut = recv.source.clone().receive(want);
                if let Poll::Ready(item) = poll_once(&mut fut) {
                    st.ready.push_back(item);
                    let v = Recv::take(&mut st, py, want, &conv).expect("just queued");
                    return Ok(Started::Ready(v));
                }
                // Polled again with a waker that reaches this loop (a wake-up between the two
                // polls is not lost); it may finish now.
                recv.start_receive(py, &mut st, fut)?;
                if let Some(v) = Recv::take(&mut st, py, want, &conv) {
                    return Ok(Started::Ready(v));
                }
            }
        }
        let (fut, _) = new_waiter(py)?;
        let id = st.next_id;
        st.next_id += 1;
        st.waiters.push_back(Waiter {
            id,
            fut: fut.clone_ref(py),
            want,
        });
        recv.pump(py, &mut st);
        drop(st);
        Ok(Started::Wait(Waiting {
            recv,
            id,
            fut,
            want,
            conv,
        }))
    }
}

impl Waiting {
    /// The future to yield while waiting.
    pub(crate) fn future(&self, py: Python<'_>) -> Py<PyAny> {
        self.fut.clone_ref(py)
    }

    /// Resumed by the task: takes the item it was woken for.
    pub(crate) fn resume(self, py: Python<'_>) -> PyResult<Resumed> {
        if !is_done(py, &self.fut) {
            return Ok(Resumed::Wait(self));
        }
        let recv = self.recv.clone();
        let mut st = recv.lock();
        st.waiters.retain(|w| w.id != self.id);
        if let Some(v) = Recv::take(&mut st, py, self.want, &self.conv) {
            recv.pump(py, &mut st);
            return Ok(Resumed::Ready(v));
        }
        // Woken without an item (cannot happen while waiters take turns): wait again, first.
        let (fut, _) = new_waiter(py)?;
        st.waiters.push_front(Waiter {
            id: self.id,
            fut: fut.clone_ref(py),
            want: self.want,
        });
        recv.pump(py, &mut st);
        drop(st);
        Ok(Resumed::Wait(Waiting { fut, ..self }))
    }

    /// Cancelled (or dropped) while waiting: leaves its place; what it was woken for stays
    /// for the next receive.
    pub(crate) fn cancel(self, py: Python<'_>) {
        let _ = self.fut.bind(py).call_method0(pyo3::intern!(py, "cancel"));
        let mut st = self.recv.lock();
        st.waiters.retain(|w| w.id != self.id);
        self.recv.pump(py, &mut st);
    }
}
