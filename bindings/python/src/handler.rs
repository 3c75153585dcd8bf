//! Python functions as qtalk handlers, and the selector mux they are registered in.
//!
//! A handler is `def f(call, *params)` (sync or `async`). Its call's argument value must be an
//! array of positional parameters, checked against the function's arity with the reference's
//! wording (`fn: expected N params, got M`), as Go's `fn.HandlerFrom` and Rust's `func` do.
//! What it returns is the reply; what it raises is the error the caller gets.
//!
//! The function runs on the event loop captured when the server or peer started ([`LoopBound`]
//! puts that loop's job queue in scope for the call's future; a callback keeps the queue of the
//! loop it was made on): a coroutine runs there as a task, a plain function in the loop's
//! default executor. When the caller abandons the call (closes its channel), the task is
//! cancelled.

use std::sync::{Arc, Mutex as StdMutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use qtalk::rpc::{BoxFuture, Call, Handler, RespondMux, Responder};
use qtalk::Value;
use tokio::sync::oneshot;

use crate::bridge::{Job, Queue};
use crate::call::{CallState, PyCall, PyResponder};
use crate::convert::Conv;

/// The helpers of `qtalk_rs._handlers`.
pub(crate) fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    HELPERS
        .get_or_try_init(py, || py.import("qtalk_rs._handlers").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// Routes selectors to handlers: `mux.handle("Upper", upper)`.
///
/// Patterns are as in qtalk-go: a selector like `"Upper"` or `"/users/Join"` (`.` reads as
/// `/`); a pattern ending in `/` (or a mux mounted at a prefix) answers every selector under
/// it. A mux is shared, not copied: handlers added after serving are live.
#[pyclass(module = "qtalk_rs._native", name = "RespondMux", frozen)]
pub(crate) struct PyMux {
    pub(crate) mux: Arc<RespondMux>,
}

#[pymethods]
impl PyMux {
    #[new]
    fn new() -> Self {
        PyMux::new_empty()
    }

    /// Registers `handler` (a function taking the call and then positional parameters, a
    /// `HandlerFunc`, a `Service`, or another RespondMux to mount under `pattern`). Returns the
    /// handler.
    fn handle<'py>(
        &self,
        py: Python<'py>,
        pattern: &str,
        handler: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let result = if let Ok(sub) = handler.cast::<PyMux>() {
            self.mux.handle(pattern, sub.get().mux.clone())
        } else if let Ok(low) = handler.cast::<PyHandlerFunc>() {
            let h = PyHandler::low_level(py, low.get().func.bind(py), None)?;
            self.mux.handle(pattern, h)
        } else if helpers(py)?
            .call_method1("is_service", (&handler,))?
            .is_truthy()?
        {
            let sub = handler.call_method0("into_mux")?;
            let sub = sub
                .cast::<PyMux>()
                .map_err(|_| PyTypeError::new_err("Service.into_mux() must return a RespondMux"))?;
            self.mux.handle(pattern, sub.get().mux.clone())
        } else {
            if !handler.is_callable() {
                return Err(PyTypeError::new_err(
                    "a handler is a function (or a HandlerFunc, a Service or another RespondMux)",
                ));
            }
            let h = PyHandler::new(py, &handler, None)?;
            self.mux.handle(pattern, h)
        };
        result.map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(handler)
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.mux)
    }
}

impl PyMux {
    pub(crate) fn new_empty() -> Self {
        PyMux {
            mux: Arc::new(RespondMux::new()),
        }
    }
}

/// `HandlerFunc(h)`: registers `h(responder, call)` as a low-level handler, as Go's
/// `rpc.HandlerFunc`: no positional-parameter check; `await call.receive()` gives the
/// argument value itself, and `responder` answers.
#[pyclass(module = "qtalk_rs._native", name = "HandlerFunc", frozen)]
pub(crate) struct PyHandlerFunc {
    func: Py<PyAny>,
}

#[pymethods]
impl PyHandlerFunc {
    #[new]
    fn new(func: Bound<'_, PyAny>) -> PyResult<Self> {
        if !func.is_callable() {
            return Err(PyTypeError::new_err(
                "HandlerFunc takes a function h(responder, call)",
            ));
        }
        Ok(PyHandlerFunc {
            func: func.unbind(),
        })
    }

    /// The wrapped function.
    #[getter]
    fn func(&self, py: Python<'_>) -> Py<PyAny> {
        self.func.clone_ref(py)
    }

    fn __call__<'py>(
        &self,
        py: Python<'py>,
        responder: Bound<'py, PyAny>,
        call: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.func.bind(py).call1((responder, call))
    }
}

/// A Python function answering calls.
pub(crate) struct PyHandler {
    func: Arc<Py<PyAny>>,
    min: usize,
    max: Option<usize>,
    is_coroutine: bool,
    /// `h(responder, call)`: the arguments are the handler's to receive.
    low_level: bool,
    /// The loop to run on, for a callback (a mux's handlers run on their server's loop).
    queue: Option<Arc<Queue>>,
}

impl PyHandler {
    pub(crate) fn new(
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        queue: Option<Arc<Queue>>,
    ) -> PyResult<PyHandler> {
        let (min, max, is_coroutine): (usize, Option<usize>, bool) =
            helpers(py)?.call_method1("arity", (func,))?.extract()?;
        Ok(PyHandler {
            func: Arc::new(func.clone().unbind()),
            min,
            max,
            is_coroutine,
            low_level: false,
            queue,
        })
    }

    fn low_level(
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        queue: Option<Arc<Queue>>,
    ) -> PyResult<PyHandler> {
        let is_coroutine: bool = helpers(py)?
            .call_method1("is_coroutine", (func,))?
            .extract()?;
        Ok(PyHandler {
            func: Arc::new(func.clone().unbind()),
            min: 0,
            max: None,
            is_coroutine,
            low_level: true,
            queue,
        })
    }
}

/// What the handler came to: the reply value or the error text.
type Outcome = Result<Value, String>;

/// The done-callback of a handler's task (run on the event loop): converts its outcome.
#[pyclass(module = "qtalk_rs._native")]
pub(crate) struct Done {
    tx: StdMutex<Option<oneshot::Sender<Outcome>>>,
    conv: Conv,
    selector: String,
}

#[pymethods]
impl Done {
    fn __call__(&self, py: Python<'_>, task: Bound<'_, PyAny>) -> PyResult<()> {
        let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let (ok, value): (bool, Bound<'_, PyAny>) = helpers(py)?
            .call_method1("outcome", (task, &self.selector))?
            .extract()?;
        let outcome = if ok {
            self.conv
                .to_value(&value)
                .map_err(|e| format!("cannot send the handler's reply: {e}"))
        } else {
            Err(value.extract::<String>()?)
        };
        let _ = tx.send(outcome);
        Ok(())
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Int(_) | Value::Float(_) => "a number",
        Value::Text(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        #[allow(unreachable_patterns)]
        _ => "a value",
    }
}

impl Handler for PyHandler {
    fn respond(&self, r: Responder, mut call: Call) -> BoxFuture<()> {
        let func = self.func.clone();
        let (min, max, is_coroutine) = (self.min, self.max, self.is_coroutine);
        let low_level = self.low_level;
        let queue = self.queue.clone();
        Box::pin(async move {
            // Read while the call's future runs: `LoopBound` sets it around the polls.
            let Some(queue) = queue.or_else(current_queue) else {
                let _ = r.error("no event loop to run the handler on").await;
                return;
            };
            if low_level {
                return run(queue, func, is_coroutine, r, call, Params::LowLevel).await;
            }
            let args: Value = match call.receive().await {
                Ok(v) => v,
                Err(e) => {
                    let _ = r.error(format!("unable to receive arguments: {e}")).await;
                    return;
                }
            };
            let params = match args {
                Value::Null => Vec::new(),
                Value::Array(items) => items,
                other => {
                    let msg = format!("fn: expected an array of params, got {}", kind(&other));
                    let _ = r.error(msg).await;
                    return;
                }
            };
            let got = params.len();
            if got < min || max.is_some_and(|m| got > m) {
                let expected = if got < min { min } else { max.unwrap_or(min) };
                let _ = r
                    .error(format!("fn: expected {expected} params, got {got}"))
                    .await;
                return;
            }
            run(queue, func, is_coroutine, r, call, Params::Values(params)).await;
        })
    }
}

/// What a handler function is called with after the call itself.
enum Params {
    /// Positional parameters: `h(call, *params)`.
    Values(Vec<Value>),
    /// Low level: `h(responder, call)`.
    LowLevel,
}

/// Starts the handler's task on the loop (a job, on the loop's thread).
#[allow(clippy::too_many_arguments)]
fn start(
    py: Python<'_>,
    func: &Py<PyAny>,
    is_coroutine: bool,
    state: &Arc<CallState>,
    params: Params,
    tx: oneshot::Sender<Outcome>,
    task_slot: &StdMutex<Option<Py<PyAny>>>,
) -> Result<(), (oneshot::Sender<Outcome>, String)> {
    let conv = Conv::session(state.caller());
    let made = (|| -> PyResult<(Py<PyAny>, Bound<'_, PyTuple>)> {
        let pycall = Py::new(py, PyCall::new(state.clone()))?;
        Ok(match &params {
            Params::Values(params) => {
                let args = params
                    .iter()
                    .map(|v| conv.to_py(py, v))
                    .collect::<PyResult<Vec<_>>>()?;
                (pycall.into_any(), PyTuple::new(py, args)?)
            }
            Params::LowLevel => {
                let responder = Py::new(py, PyResponder::new(state.clone()))?;
                (responder.into_any(), PyTuple::new(py, [pycall])?)
            }
        })
    })();
    let (first, args) = match made {
        Ok(v) => v,
        Err(e) => return Err((tx, format!("cannot run the handler: {e}"))),
    };
    let done = Done {
        tx: StdMutex::new(Some(tx)),
        conv,
        selector: state.selector().to_string(),
    };
    let done = match Py::new(py, done) {
        Ok(d) => d,
        Err(e) => {
            // The sender went with `done`; the handler side sees the call dropped.
            return Err((oneshot::channel().0, format!("cannot run the handler: {e}")));
        }
    };
    match helpers(py).and_then(|h| {
        h.call_method1(
            "start",
            (func.bind(py), is_coroutine, first, args, done.clone_ref(py)),
        )
    }) {
        Ok(task) => {
            *task_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.unbind());
            Ok(())
        }
        Err(e) => {
            let tx = done
                .borrow(py)
                .tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| oneshot::channel().0);
            Err((tx, format!("cannot run the handler: {e}")))
        }
    }
}

/// Runs the handler function on its event loop and answers with its outcome (unless it
/// answered itself), stopping it if the caller abandons the call.
async fn run(
    queue: Arc<Queue>,
    func: Arc<Py<PyAny>>,
    is_coroutine: bool,
    r: Responder,
    call: Call,
    params: Params,
) {
    let cancelled = call.cancelled();
    let state = CallState::new(call, r);
    let (tx, rx) = oneshot::channel::<Outcome>();
    let task_slot: Arc<StdMutex<Option<Py<PyAny>>>> = Arc::default();
    let job: Job = {
        let state = state.clone();
        let task_slot = task_slot.clone();
        Box::new(move |py| {
            if let Err((tx, msg)) = start(py, &func, is_coroutine, &state, params, tx, &task_slot) {
                let _ = tx.send(Err(msg));
            }
        })
    };
    if queue.push(job).is_err() {
        if let Some(r) = state.take_responder() {
            let _ = r.error("the event loop serving this call is closed").await;
        }
        state.release();
        return;
    }

    let mut rx = rx;
    let outcome = tokio::select! {
        outcome = &mut rx => outcome.unwrap_or_else(|_| Err("handler cancelled".into())),
        _ = cancelled => {
            if state.answered() {
                // The handler answered and the caller went: the call is over, not abandoned;
                // the handler finishes its own work.
                let _ = rx.await;
                state.release();
                return;
            }
            // The caller abandoned the call: stop the handler's task.
            let job: Job = Box::new(move |py| {
                if let Some(task) = task_slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = task.bind(py).call_method0("cancel");
                }
            });
            let _ = queue.push(job);
            state.release();
            return;
        }
    };
    if let Some(r) = state.take_responder() {
        let _ = match outcome {
            Ok(v) => r.ret(&v).await,
            Err(msg) => r.error(msg).await,
        };
    }
    state.release();
}

tokio::task_local! {
    /// The job queue of the loop Python handlers run on, for the call being answered.
    static QUEUE: Arc<Queue>;
}

/// The queue for Python handlers of the call being answered, if one is set.
fn current_queue() -> Option<Arc<Queue>> {
    QUEUE.try_with(|q| q.clone()).ok()
}

/// Runs a mux's handlers on the event loop captured when the server or peer started.
pub(crate) struct LoopBound<H> {
    pub(crate) handler: H,
    pub(crate) queue: Arc<Queue>,
}

impl<H: Handler> Handler for LoopBound<H> {
    fn respond(&self, r: Responder, call: Call) -> BoxFuture<()> {
        Box::pin(QUEUE.scope(self.queue.clone(), self.handler.respond(r, call)))
    }
}
