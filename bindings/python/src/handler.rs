//! Python functions as qtalk handlers, and the selector mux they are registered in.
//!
//! A handler is `def f(call, *params)` (sync or `async`). Its call's argument value must be an
//! array of positional parameters, checked against the function's arity with the reference's
//! wording (`fn: expected N params, got M`), as Go's `fn.HandlerFrom` and Rust's `func` do.
//! What it returns is the reply; what it raises is the error the caller gets.
//!
//! The function runs on the asyncio event loop captured when the server or peer started
//! (`LoopBound` puts it in scope for the call's future); a coroutine runs there as a task, a
//! plain function in the loop's default executor. When the caller abandons the call (closes
//! its channel), the task is cancelled.

use std::sync::{Arc, Mutex as StdMutex};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use qtalk::rpc::{BoxFuture, Call, Handler, RespondMux, Responder};
use qtalk::Value;
use tokio::sync::oneshot;

use crate::bridge::{current_loop, with_loop, with_python};
use crate::call::{CallState, PyCall, PyResponder};
use crate::convert::{from_value, to_value};

/// Routes selectors to handlers: `mux.handle("Upper", upper)`.
///
/// Patterns are as in qtalk-go: a selector like `"Upper"` or `"/users/Join"` (`.` reads as
/// `/`); a pattern ending in `/` (or a mux mounted at a prefix) answers every selector under
/// it. A mux is shared, not copied: handlers added after serving are live.
#[pyclass(module = "qtalk_rs", name = "RespondMux", frozen)]
pub(crate) struct PyMux {
    pub(crate) mux: Arc<RespondMux>,
}

#[pymethods]
impl PyMux {
    #[new]
    fn new() -> Self {
        PyMux::new_empty()
    }

    /// Registers `handler` (a function taking the call and then positional parameters, or
    /// another RespondMux to mount under `pattern`). Returns the handler, so it can be used
    /// as a decorator through `mux.handler(pattern)`.
    fn handle<'py>(
        &self,
        py: Python<'py>,
        pattern: &str,
        handler: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let result = if let Ok(sub) = handler.cast::<PyMux>() {
            self.mux.handle(pattern, sub.get().mux.clone())
        } else if let Ok(low) = handler.cast::<PyHandlerFunc>() {
            let h = PyHandler::low_level(py, low.get().func.bind(py))?;
            self.mux.handle(pattern, h)
        } else {
            if !handler.is_callable() {
                return Err(PyTypeError::new_err(
                    "a handler is a function (or another RespondMux)",
                ));
            }
            let h = PyHandler::new(py, &handler)?;
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
#[pyclass(module = "qtalk_rs", name = "HandlerFunc", frozen)]
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
struct PyHandler {
    func: Arc<Py<PyAny>>,
    min: usize,
    max: Option<usize>,
    is_coroutine: bool,
    /// `h(responder, call)`: the arguments are the handler's to receive.
    low_level: bool,
}

impl PyHandler {
    fn new(py: Python<'_>, func: &Bound<'_, PyAny>) -> PyResult<PyHandler> {
        let helpers = py.import("qtalk_rs._handlers")?;
        let (min, max, is_coroutine): (usize, Option<usize>, bool) =
            helpers.call_method1("arity", (func,))?.extract()?;
        Ok(PyHandler {
            func: Arc::new(func.clone().unbind()),
            min,
            max,
            is_coroutine,
            low_level: false,
        })
    }

    fn low_level(py: Python<'_>, func: &Bound<'_, PyAny>) -> PyResult<PyHandler> {
        let helpers = py.import("qtalk_rs._handlers")?;
        let is_coroutine: bool = helpers.call_method1("is_coroutine", (func,))?.extract()?;
        Ok(PyHandler {
            func: Arc::new(func.clone().unbind()),
            min: 0,
            max: None,
            is_coroutine,
            low_level: true,
        })
    }
}

/// What the handler came to: the reply value or the error text.
type Outcome = Result<Value, String>;

/// The done-callback of a handler's future (run on the event loop): converts its outcome.
#[pyclass(module = "qtalk_rs")]
pub(crate) struct Done {
    tx: StdMutex<Option<oneshot::Sender<Outcome>>>,
}

#[pymethods]
impl Done {
    fn __call__(&self, py: Python<'_>, fut: Bound<'_, PyAny>) -> PyResult<()> {
        let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let helpers = py.import("qtalk_rs._handlers")?;
        let (ok, value): (bool, Bound<'_, PyAny>) =
            helpers.call_method1("outcome", (fut,))?.extract()?;
        let outcome = if ok {
            to_value(&value).map_err(|e| format!("cannot send the handler's reply: {e}"))
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
        Box::pin(async move {
            if low_level {
                return respond_low_level(func, is_coroutine, r, call).await;
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

            let params = Params::Values(params);
            run(func, is_coroutine, r, call, params).await;
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

async fn respond_low_level(func: Arc<Py<PyAny>>, is_coroutine: bool, r: Responder, call: Call) {
    run(func, is_coroutine, r, call, Params::LowLevel).await
}

/// Runs the handler function on its event loop and answers with its outcome (unless it
/// answered itself), stopping it if the caller abandons the call.
async fn run(func: Arc<Py<PyAny>>, is_coroutine: bool, r: Responder, call: Call, params: Params) {
    let cancelled = call.cancelled();
    let state = CallState::new(call, r);
    let (tx, rx) = oneshot::channel::<Outcome>();
    let started = with_python(|py| -> PyResult<Py<PyAny>> {
        let event_loop = current_loop()
            .ok_or_else(|| PyValueError::new_err("no event loop to run the handler on"))?;
        let pycall = Py::new(py, PyCall::new(state.clone()))?;
        let (first, args) = match &params {
            Params::Values(params) => {
                let args = params
                    .iter()
                    .map(|v| from_value(py, v))
                    .collect::<PyResult<Vec<_>>>()?;
                (pycall.into_any(), PyTuple::new(py, args)?)
            }
            Params::LowLevel => {
                let responder = Py::new(py, PyResponder::new(state.clone()))?;
                (responder.into_any(), PyTuple::new(py, [pycall])?)
            }
        };
        let done = Py::new(
            py,
            Done {
                tx: StdMutex::new(Some(tx)),
            },
        )?;
        let helpers = py.import("qtalk_rs._handlers")?;
        let fut = helpers.call_method1(
            "start",
            (
                event_loop.bind(py),
                func.bind(py),
                is_coroutine,
                first,
                args,
                done,
            ),
        )?;
        Ok(fut.unbind())
    });
    let fut = match started.unwrap_or_else(|| Err(PyValueError::new_err("exiting"))) {
        Ok(f) => f,
        Err(e) => {
            if let Some(r) = state.take_responder() {
                let _ = r.error(format!("cannot run the handler: {e}")).await;
            }
            state.release();
            return;
        }
    };

    let outcome = tokio::select! {
        outcome = rx => outcome.unwrap_or_else(|_| Err("handler cancelled".into())),
        _ = cancelled => {
            // The caller abandoned the call: stop the handler's task.
            with_python(|py| {
                let _ = fut.bind(py).call_method0("cancel");
            });
            state.release();
            return;
        }
    };
    drop(fut);
    if let Some(r) = state.take_responder() {
        let _ = match outcome {
            Ok(v) => r.ret(&v).await,
            Err(msg) => r.error(msg).await,
        };
    }
    state.release();
}

/// Runs a mux's handlers on the event loop captured when the server or peer started.
pub(crate) struct LoopBound {
    pub(crate) mux: Arc<RespondMux>,
    pub(crate) event_loop: Arc<Py<PyAny>>,
}

impl Handler for LoopBound {
    fn respond(&self, r: Responder, call: Call) -> BoxFuture<()> {
        Box::pin(with_loop(
            self.event_loop.clone(),
            self.mux.respond(r, call),
        ))
    }
}
