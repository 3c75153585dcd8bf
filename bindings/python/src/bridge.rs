//! Rust futures as asyncio coroutines, on a tokio runtime owned by the module.
//!
//! Every awaitable the module returns is an [`Op`]: a coroutine object (it has `send`,
//! `throw`, `close` and `__await__`, so `asyncio.create_task` and `TaskGroup.create_task` take
//! it) that starts nothing until it is first stepped. Once stepped it either finishes at once
//! (bytes already received, room in the channel's send buffer: no thread is involved) or waits
//! on an asyncio future. Calls and other operations run their Rust future on the runtime
//! meanwhile; a stream's sends, writes and receives stay on the loop's thread, polled again
//! there each time their waker fires ([`LoopWaker`]): the runtime's threads only run the
//! session, and a wake-up reaches the loop with no task of the runtime in between.
//!
//! Results come back to the event loop through its [`Dispatcher`]: a queue of jobs, and one end
//! of a socket pair that the loop watches (`add_reader`). A runtime thread pushes a job and, when
//! the queue was empty, writes one byte; the loop runs the queued jobs with the GIL. So runtime
//! threads never take the GIL, and nothing of theirs runs Python while the interpreter exits.
//! Loops without `add_reader` (Windows' proactor) are woken with `call_soon_threadsafe` from a
//! blocking-pool thread instead, through [`with_python`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex as StdMutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use pyo3::{intern, IntoPyObjectExt};
use tokio::runtime::Runtime;

use crate::errors::Failure;

/// The runtime every Rust future of the module runs on (created on first use).
///
/// One worker per core but one, and at least one: the interpreter keeps a core busy with the
/// event loop, and a worker more than the cores left only adds wake-ups between the workers
/// (on two cores, one worker made calls 18-32% faster than two, and bulk streams no slower).
/// `TOKIO_WORKER_THREADS` sets the number instead.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            b.worker_threads(cores.saturating_sub(1).max(1));
        }
        b.thread_name("qtalk-rs")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime")
    })
}

// ---- entering Python from other threads (the fallback waker and the log thread) ------------

static IN_PYTHON: AtomicUsize = AtomicUsize::new(0);
static EXITING: AtomicBool = AtomicBool::new(false);
static LEFT: (StdMutex<()>, Condvar) = (StdMutex::new(()), Condvar::new());

/// Runs `f` with the GIL from a thread of the module's own; `None` once the interpreter is
/// exiting. [`shutdown`] waits for every `f` under way before the interpreter finalizes.
pub(crate) fn with_python<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            if IN_PYTHON.fetch_sub(1, Ordering::SeqCst) == 1 {
                let _guard = LEFT.0.lock().unwrap_or_else(|p| p.into_inner());
                LEFT.1.notify_all();
            }
        }
    }
    IN_PYTHON.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave;
    if EXITING.load(Ordering::SeqCst) {
        return None;
    }
    Some(Python::attach(f))
}

/// The `atexit` hook: the module's threads enter Python no more; waits (without the GIL, at
/// most 5 s) for those inside.
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let guard = LEFT.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = LEFT
            .1
            .wait_timeout_while(guard, Duration::from_secs(5), |_| {
                IN_PYTHON.load(Ordering::SeqCst) > 0
            });
    });
}

// ---- the per-loop job queue ------------------------------------------------------------------

/// Work for the event loop's thread, run with the GIL.
pub(crate) type Job = Box<dyn for<'py> FnOnce(Python<'py>) + Send>;

/// How a queue wakes its loop.
enum Wake {
    /// Writes a byte to the socket the loop watches.
    #[cfg(unix)]
    Socket(std::os::unix::net::UnixStream),
    /// `loop.call_soon_threadsafe(drain)` from a blocking-pool thread.
    ThreadSafe {
        event_loop: Arc<Py<PyAny>>,
        drain: Arc<Py<PyAny>>,
    },
    /// Not attached to a loop yet.
    None,
}

struct QueueState {
    jobs: Vec<Job>,
    /// A wake-up is on its way (set by the push that found the queue empty).
    armed: bool,
    closed: bool,
}

/// The jobs waiting for one event loop. Pushed from any thread; run by [`Dispatcher::drain`].
pub(crate) struct Queue {
    state: StdMutex<QueueState>,
    wake: StdMutex<Wake>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job` for the loop; gives it back when the loop is closed.
    pub(crate) fn push(&self, job: Job) -> Result<(), Job> {
        let wake = {
            let mut st = self.lock();
            if st.closed {
                return Err(job);
            }
            st.jobs.push(job);
            !std::mem::replace(&mut st.armed, true)
        };
        if wake {
            self.wake();
        }
        Ok(())
    }

    fn wake(&self) {
        let wake = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        match &*wake {
            #[cfg(unix)]
            Wake::Socket(s) => {
                use std::io::Write;
                // Non-blocking; a full buffer means wake-ups are already pending.
                let _ = (&*s).write(&[1]);
            }
            Wake::ThreadSafe { event_loop, drain } => {
                let (event_loop, drain) = (event_loop.clone(), drain.clone());
                drop(runtime().spawn_blocking(move || {
                    with_python(|py| {
                        let _ = event_loop
                            .bind(py)
                            .call_method1(intern!(py, "call_soon_threadsafe"), (drain.bind(py),));
                    });
                }));
            }
            Wake::None => {}
        }
    }
}

/// The job queue of one event loop, as the loop sees it: `fileno()` to watch, `drain()` to run
/// the jobs (`qtalk_rs._loop` attaches it).
#[pyclass(module = "qtalk_rs._native", frozen)]
pub(crate) struct Dispatcher {
    queue: Arc<Queue>,
    #[cfg(unix)]
    reader: Option<std::os::unix::net::UnixStream>,
}

#[pymethods]
impl Dispatcher {
    #[new]
    fn new() -> PyResult<Self> {
        #[cfg(unix)]
        {
            let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            writer.set_nonblocking(true)?;
            Ok(Dispatcher {
                queue: Arc::new(Queue {
                    state: StdMutex::new(QueueState {
                        jobs: Vec::new(),
                        armed: false,
                        closed: false,
                    }),
                    wake: StdMutex::new(Wake::Socket(writer)),
                }),
                reader: Some(reader),
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Dispatcher {
                queue: Arc::new(Queue {
                    state: StdMutex::new(QueueState {
                        jobs: Vec::new(),
                        armed: false,
                        closed: false,
                    }),
                    wake: StdMutex::new(Wake::None),
                }),
            })
        }
    }

    /// The file descriptor to watch for reading, or -1 where there is none.
    fn fileno(&self) -> i64 {
        #[cfg(unix)]
        if let Some(r) = &self.reader {
            use std::os::fd::AsRawFd;
            return i64::from(r.as_raw_fd());
        }
        -1
    }

    /// Wakes `event_loop` with `call_soon_threadsafe(drain)` instead (for loops that cannot
    /// watch a file descriptor).
    fn use_call_soon_threadsafe(
        slf: Bound<'_, Self>,
        event_loop: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let drain = slf.getattr("drain")?.unbind();
        let this = slf.get();
        *this.queue.wake.lock().unwrap_or_else(|p| p.into_inner()) = Wake::ThreadSafe {
            event_loop: Arc::new(event_loop.unbind()),
            drain: Arc::new(drain),
        };
        Ok(())
    }

    /// Runs the queued jobs (on the loop's thread).
    fn drain(&self, py: Python<'_>) {
        #[cfg(unix)]
        if let Some(r) = &self.reader {
            use std::io::Read;
            let mut buf = [0u8; 256];
            while matches!((&*r).read(&mut buf), Ok(n) if n > 0) {}
        }
        let jobs = {
            let mut st = self.queue.lock();
            st.armed = false;
            std::mem::take(&mut st.jobs)
        };
        for job in jobs {
            job(py);
        }
    }

    /// Refuses further jobs and drops the queued ones (the loop is closing).
    fn close(&self) {
        let jobs = {
            let mut st = self.queue.lock();
            st.closed = true;
            std::mem::take(&mut st.jobs)
        };
        drop(jobs);
        *self.queue.wake.lock().unwrap_or_else(|p| p.into_inner()) = Wake::None;
    }
}

/// A loop held by [`LAST_LOOP`], and its queue.
type CachedLoop = (std::mem::ManuallyDrop<Py<PyAny>>, Arc<Queue>);

thread_local! {
    /// The last loop looked up on this thread, and its queue. The loop reference is never
    /// dropped by the thread-local's destructor (it may run after the interpreter finalized);
    /// it is replaced, with the GIL held, when another loop is looked up.
    static LAST_LOOP: std::cell::RefCell<Option<CachedLoop>> = const { std::cell::RefCell::new(None) };
}

/// The running event loop and its job queue (made on first use).
pub(crate) fn running_queue(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Arc<Queue>)> {
    static GET_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let get_loop = GET_LOOP.import(py, "asyncio", "get_running_loop")?;
    let event_loop = get_loop.call0()?;
    let cached = LAST_LOOP.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(l, _)| l.as_ptr() == event_loop.as_ptr())
            .map(|(_, q)| q.clone())
    });
    if let Some(q) = cached {
        return Ok((event_loop, q));
    }
    static DISPATCHER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let d = DISPATCHER
        .import(py, "qtalk_rs._loop", "dispatcher")?
        .call1((&event_loop,))?;
    let queue = d.cast::<Dispatcher>()?.get().queue.clone();
    let old = LAST_LOOP.with(|c| {
        c.borrow_mut().replace((
            std::mem::ManuallyDrop::new(event_loop.clone().unbind()),
            queue.clone(),
        ))
    });
    if let Some((l, _)) = old {
        drop(std::mem::ManuallyDrop::into_inner(l));
    }
    Ok((event_loop, queue))
}

// ---- results ----------------------------------------------------------------------------------

/// A result on its way to Python, converted once the GIL is held.
pub(crate) trait ToPy: Send {
    fn to_py(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

impl<T> ToPy for T
where
    T: for<'py> IntoPyObject<'py> + Send,
{
    fn to_py(self: Box<Self>, py: Python<'_>) -> PyResult<Py<PyAny>> {
        (*self).into_py_any(py)
    }
}

/// What an operation's Rust future comes to.
pub(crate) type Outcome = Result<Box<dyn ToPy>, Failure>;

/// A boxed operation future.
pub(crate) type OpFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Boxes `fut` as an [`OpFuture`].
pub(crate) fn op_future<F, T>(fut: F) -> OpFuture
where
    F: Future<Output = Result<T, Failure>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    Box::pin(async move { fut.await.map(|v| Box::new(v) as Box<dyn ToPy>) })
}

pub(crate) fn outcome_to_py(py: Python<'_>, out: Outcome) -> PyResult<Py<PyAny>> {
    match out {
        Ok(v) => v.to_py(py),
        Err(f) => Err(f.into_pyerr(py)),
    }
}

/// Polls `fut` once, here, with a waker that does nothing.
pub(crate) fn poll_once<F: Future + Unpin + ?Sized>(fut: &mut F) -> Poll<F::Output> {
    let _guard = runtime().enter();
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(fut).poll(&mut cx)
}

/// Polls `fut` once with a waker that does nothing (inside a runtime task, or after
/// [`poll_once`] entered the runtime).
pub(crate) fn poll_now<F: Future + ?Sized>(fut: &mut Pin<&mut F>) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    fut.as_mut().poll(&mut cx)
}

/// Sets `fut`'s outcome unless it is done (cancelled) already.
fn settle(py: Python<'_>, fut: &Bound<'_, PyAny>, outcome: PyResult<Py<PyAny>>) {
    let done = fut
        .call_method0(intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    if done {
        return;
    }
    let _ = match outcome {
        Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)),
        Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)),
    };
}

/// Wakes a future polled on an event loop's thread: the wake-up becomes a job on the loop's
/// queue that settles the asyncio future its coroutine waits on, and the coroutine polls the
/// future again when it resumes. No runtime thread runs the future, and no task of the runtime
/// stands between the wake-up and the loop.
pub(crate) struct LoopWaker {
    queue: Arc<Queue>,
    /// The asyncio future to settle on the next wake-up (taken by it).
    target: StdMutex<Option<Py<PyAny>>>,
}

impl LoopWaker {
    pub(crate) fn new(queue: Arc<Queue>) -> Arc<LoopWaker> {
        Arc::new(LoopWaker {
            queue,
            target: StdMutex::new(None),
        })
    }

    fn target(&self) -> std::sync::MutexGuard<'_, Option<Py<PyAny>>> {
        self.target.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls `fut` once with this waker, which settles `waiter` when `fut` can make progress
    /// (a wake-up that comes first, while it is polled, settles it too).
    fn poll<F: Future + ?Sized>(
        self: &Arc<Self>,
        py: Python<'_>,
        fut: Pin<&mut F>,
        waiter: &Py<PyAny>,
    ) -> Poll<F::Output> {
        *self.target() = Some(waiter.clone_ref(py));
        let waker = Waker::from(self.clone());
        let _guard = runtime().enter();
        let res = fut.poll(&mut Context::from_waker(&waker));
        if res.is_ready() {
            self.target().take();
        }
        res
    }

    /// Stops settling anything.
    fn forget(&self) -> Option<Py<PyAny>> {
        self.target().take()
    }
}

impl std::task::Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let target = self.target().take();
        if let Some(fut) = target {
            // A closed loop has no one waiting.
            let _ = self.queue.push(Box::new(move |py| {
                wake_future(py, &fut);
            }));
        }
    }
}

// ---- the coroutine object ---------------------------------------------------------------------

/// What an [`Op`] does once stepped.
pub(crate) enum Start {
    /// Run the future on the runtime. `abort`: cancelling the coroutine drops it (a call: its
    /// channel closes); otherwise it finishes in the background (a write: all or nothing).
    Spawn { fut: OpFuture, abort: bool },
    /// Poll the future on the loop's thread: when it finishes at once no other thread is
    /// involved; otherwise it is polled again there each time it is woken (see [`LoopWaker`]).
    /// `abort` as for `Spawn`: a cancelled operation that must finish is handed to the runtime.
    Inline { fut: OpFuture, abort: bool },
    /// The value is known already.
    Ready(PyResult<Py<PyAny>>),
    /// A receive from a stream that keeps what arrives after its waiter was cancelled.
    Recv(crate::recv::RecvOp),
    /// Makes the operation when first stepped (with the running loop at hand).
    Deferred(Box<dyn FnOnce(Python<'_>) -> PyResult<Op> + Send>),
}

/// Makes a `Send` value `Sync`: the value is reachable only through `&mut` (pyo3 gives an
/// `Op`'s methods exclusive access), so no two threads ever share it. (`sync_wrapper`'s
/// `SyncWrapper`, in a few lines.)
pub(crate) struct Exclusive<T>(T);

// SAFETY: `&Exclusive<T>` gives no access to the `T`; only `&mut` does.
unsafe impl<T: Send> Sync for Exclusive<T> {}

enum State {
    New(Exclusive<Start>),
    Waiting {
        fut: Py<PyAny>,
        abort: Option<tokio::task::AbortHandle>,
    },
    Receiving(crate::recv::Waiting),
    /// Polled on the loop's thread, waiting for `waker` to settle `waiter`.
    Local {
        fut: Exclusive<OpFuture>,
        waker: Arc<LoopWaker>,
        waiter: Py<PyAny>,
        abort: bool,
    },
    Done,
}

/// What `async with op:` does with the result.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AsyncWith {
    /// Not a context manager.
    No,
    /// The result is itself an async context manager (`async with connect(...) as peer`).
    Result,
}

/// A coroutine running one operation of the module. Nothing starts before it is awaited (or
/// wrapped in a task); cancelling it while it waits drops its Rust future, except where the
/// operation says otherwise (writes finish; receives keep their result for the next receive).
#[pyclass(module = "qtalk_rs._native", name = "Op")]
pub(crate) struct Op {
    state: State,
    name: &'static str,
    cm: AsyncWith,
    entered: Option<Py<PyAny>>,
}

impl Op {
    pub(crate) fn new(name: &'static str, start: Start) -> Op {
        Op {
            state: State::New(Exclusive(start)),
            name,
            cm: AsyncWith::No,
            entered: None,
        }
    }

    /// An [`Op`] usable as `async with` too: it enters (and exits) the result.
    pub(crate) fn context_manager(mut self) -> Op {
        self.cm = AsyncWith::Result;
        self
    }

    /// Runs `fut` on the runtime; cancelling drops it.
    pub(crate) fn spawn<F, T>(name: &'static str, fut: F) -> Op
    where
        F: Future<Output = Result<T, Failure>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        Op::new(
            name,
            Start::Spawn {
                fut: op_future(fut),
                abort: true,
            },
        )
    }

    /// Polls `fut` here first; runs it on the runtime when it cannot finish at once.
    pub(crate) fn inline<F, T>(name: &'static str, fut: F, abort: bool) -> Op
    where
        F: Future<Output = Result<T, Failure>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        Op::new(
            name,
            Start::Inline {
                fut: op_future(fut),
                abort,
            },
        )
    }

    /// An operation made by `make` when first stepped.
    pub(crate) fn deferred(
        name: &'static str,
        make: impl FnOnce(Python<'_>) -> PyResult<Op> + Send + 'static,
    ) -> Op {
        Op::new(name, Start::Deferred(Box::new(make)))
    }

    /// An operation whose result is known.
    pub(crate) fn ready(name: &'static str, value: PyResult<Py<PyAny>>) -> Op {
        Op::new(name, Start::Ready(value))
    }

    /// One step: `Ok(Some(fut))` yields `fut` to the task; `Ok(None)` cannot happen;
    /// `Err(StopIteration(v))` returns `v`.
    fn step(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::New(Exclusive(start)) => match start {
                    Start::Ready(v) => return self.finish(py, v),
                    Start::Inline { mut fut, abort } => match poll_once(&mut fut) {
                        Poll::Ready(out) => return self.finish(py, outcome_to_py(py, out)),
                        Poll::Pending => {
                            // Polled again with a waker that reaches this loop: a wake-up
                            // between the two polls is not lost.
                            let (_, queue) = running_queue(py)?;
                            return self.poll_local(py, fut, LoopWaker::new(queue), abort);
                        }
                    },
                    Start::Spawn { fut, abort } => {
                        let (event_loop, queue) = running_queue(py)?;
                        let pyfut = event_loop.call_method0(intern!(py, "create_future"))?;
                        let target = pyfut.clone().unbind();
                        let handle = runtime().spawn(async move {
                            let out = fut.await;
                            let job: Job = Box::new(move |py| {
                                settle(py, target.bind(py), outcome_to_py(py, out));
                            });
                            // A closed loop has no one waiting.
                            let _ = queue.push(job);
                        });
                        let abort = abort.then(|| handle.abort_handle());
                        return self.wait_on(py, pyfut.unbind(), abort);
                    }
                    Start::Deferred(make) => {
                        let mut inner = make(py)?;
                        self.state = std::mem::replace(&mut inner.state, State::Done);
                    }
                    Start::Recv(op) => match op.start(py)? {
                        crate::recv::Started::Ready(v) => return self.finish(py, v),
                        crate::recv::Started::Wait(w) => {
                            let fut = w.future(py);
                            self.state = State::Receiving(w);
                            return yield_future(py, fut);
                        }
                    },
                },
                State::Waiting { fut, abort } => {
                    let f = fut.bind(py);
                    if !f.call_method0(intern!(py, "done"))?.is_truthy()? {
                        return self.wait_on(py, fut, abort);
                    }
                    let result = f.call_method0(intern!(py, "result")).map(Bound::unbind);
                    return self.finish(py, result);
                }
                State::Local {
                    fut: Exclusive(fut),
                    waker,
                    waiter,
                    abort,
                } => {
                    if !is_done(py, &waiter) {
                        // Resumed before the wake-up (not by asyncio's tasks): keep waiting.
                        let yielded = waiter.clone_ref(py);
                        self.state = State::Local {
                            fut: Exclusive(fut),
                            waker,
                            waiter,
                            abort,
                        };
                        return yield_future(py, yielded);
                    }
                    return self.poll_local(py, fut, waker, abort);
                }
                State::Receiving(w) => match w.resume(py)? {
                    crate::recv::Resumed::Ready(v) => return self.finish(py, v),
                    crate::recv::Resumed::Wait(w) => {
                        let fut = w.future(py);
                        self.state = State::Receiving(w);
                        return yield_future(py, fut);
                    }
                },
                State::Done => {
                    return Err(PyRuntimeError::new_err(format!(
                        "cannot reuse already awaited coroutine {}",
                        self.name
                    )))
                }
            }
        }
    }

    /// Polls `fut` on this thread; when it is not done, waits for `waker` to call again.
    fn poll_local(
        &mut self,
        py: Python<'_>,
        mut fut: OpFuture,
        waker: Arc<LoopWaker>,
        abort: bool,
    ) -> PyResult<Py<PyAny>> {
        let (waiter, _) = new_waiter(py)?;
        match waker.poll(py, fut.as_mut(), &waiter) {
            Poll::Ready(out) => self.finish(py, outcome_to_py(py, out)),
            Poll::Pending => {
                let yielded = waiter.clone_ref(py);
                self.state = State::Local {
                    fut: Exclusive(fut),
                    waker,
                    waiter,
                    abort,
                };
                yield_future(py, yielded)
            }
        }
    }

    fn wait_on(
        &mut self,
        py: Python<'_>,
        fut: Py<PyAny>,
        abort: Option<tokio::task::AbortHandle>,
    ) -> PyResult<Py<PyAny>> {
        let yielded = fut.clone_ref(py);
        self.state = State::Waiting { fut, abort };
        yield_future(py, yielded)
    }

    fn finish(&mut self, py: Python<'_>, value: PyResult<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        self.state = State::Done;
        let value = value?;
        if self.cm == AsyncWith::Result && self.entered.is_none() {
            self.entered = Some(value.clone_ref(py));
        }
        Err(PyStopIteration::new_err((value,)))
    }

    /// Stops waiting (cancelled, or closed): drops the Rust future where the operation allows.
    fn stop(&mut self, py: Python<'_>) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Waiting { fut, abort } => {
                if let Some(a) = abort {
                    a.abort();
                }
                let _ = fut.bind(py).call_method0(intern!(py, "cancel"));
            }
            State::Receiving(w) => w.cancel(py),
            State::Local {
                fut: Exclusive(fut),
                waker,
                waiter,
                abort,
            } => {
                waker.forget();
                let _ = waiter.bind(py).call_method0(intern!(py, "cancel"));
                finish_abandoned(fut, abort);
            }
            State::New(_) | State::Done => {}
        }
    }
}

/// An operation polled on the loop's thread that nobody waits for any more: dropped when it
/// may be, or else finished on the runtime (a write: all or nothing).
fn finish_abandoned(fut: OpFuture, abort: bool) {
    if abort {
        drop(fut);
    } else {
        drop(runtime().spawn(async move {
            drop(fut.await);
        }));
    }
}

/// Yields `fut` to the task driving the coroutine, as `Future.__await__` does.
fn yield_future(py: Python<'_>, fut: Py<PyAny>) -> PyResult<Py<PyAny>> {
    fut.bind(py)
        .setattr(intern!(py, "_asyncio_future_blocking"), true)?;
    Ok(fut)
}

impl Drop for Op {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Waiting { abort, .. } => {
                if let Some(a) = abort {
                    a.abort();
                }
            }
            State::Receiving(w) => {
                // Dropped while waiting (its task was destroyed): the queue moves on.
                Python::attach(|py| w.cancel(py));
            }
            State::Local {
                fut: Exclusive(fut),
                waker,
                abort,
                ..
            } => {
                waker.forget();
                finish_abandoned(fut, abort);
            }
            State::New(_) | State::Done => {}
        }
    }
}

#[pymethods]
impl Op {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// Resumes the coroutine (the value sent is ignored, as asyncio sends `None`).
    #[pyo3(signature = (_value = None))]
    fn send(&mut self, py: Python<'_>, _value: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        self.step(py)
    }

    /// Raises `exc` in the coroutine: it stops waiting and raises it.
    #[pyo3(signature = (typ, val = None, _tb = None))]
    fn throw(
        &mut self,
        py: Python<'_>,
        typ: Bound<'_, PyAny>,
        val: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.stop(py);
        let exc = match val {
            Some(v) if !v.is_none() => {
                if v.is_instance_of::<pyo3::exceptions::PyBaseException>() {
                    v
                } else {
                    typ.call1((v,))?
                }
            }
            _ => {
                if typ.is_instance_of::<PyType>() {
                    typ.call0()?
                } else {
                    typ
                }
            }
        };
        Err(PyErr::from_value(exc))
    }

    /// Closes the coroutine: it stops waiting.
    fn close(&mut self, py: Python<'_>) {
        self.stop(py);
    }

    fn __aenter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Py<Self>> {
        if slf.borrow(py).cm != AsyncWith::Result {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{} is not an async context manager",
                slf.borrow(py).name
            )));
        }
        Ok(slf)
    }

    fn __aexit__<'py>(
        &mut self,
        py: Python<'py>,
        exc_type: Bound<'py, PyAny>,
        exc: Bound<'py, PyAny>,
        tb: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.entered.take() {
            Some(v) => v
                .bind(py)
                .call_method1(intern!(py, "__aexit__"), (exc_type, exc, tb)),
            None => Op::ready("__aexit__", Ok(false.into_py_any(py)?)).into_bound_py_any(py),
        }
    }

    fn __repr__(&self) -> String {
        format!("<qtalk_rs coroutine {}>", self.name)
    }
}

/// A new asyncio future on the running loop, for a receive to wait on.
pub(crate) fn new_waiter(py: Python<'_>) -> PyResult<(Py<PyAny>, Arc<Queue>)> {
    let (event_loop, queue) = running_queue(py)?;
    let fut = event_loop.call_method0(intern!(py, "create_future"))?;
    Ok((fut.unbind(), queue))
}

/// Sets `fut`'s result to `None` unless it is done.
pub(crate) fn wake_future(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    let f = fut.bind(py);
    let done = f
        .call_method0(intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    if done {
        return false;
    }
    f.call_method1(intern!(py, "set_result"), (py.None(),))
        .is_ok()
}

/// True when `fut` was cancelled.
pub(crate) fn is_cancelled(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    fut.bind(py)
        .call_method0(intern!(py, "cancelled"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true)
}

/// True when `fut` is done.
pub(crate) fn is_done(py: Python<'_>, fut: &Py<PyAny>) -> bool {
    fut.bind(py)
        .call_method0(intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true)
}
