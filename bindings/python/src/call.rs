//! Streams of values: a caller's [`PyResponse`], a handler's [`PyCall`] and the [`PyStream`]
//! it continues into.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use crate::bridge::spawn_py;
use pyo3::exceptions::{PyEOFError, PyStopAsyncIteration, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyTuple};
use qtalk::rpc::{Call, Continued, Responder, Response, ResponseReader, ResponseWriter};
use qtalk::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Mutex};

use crate::bridge::Failure;
use crate::convert::{to_value, PyValue};
use crate::peer::PyCaller;
use crate::qtalk_error;

/// A value source that `close()` can interrupt: a pending receive then ends the stream.
struct Closable<T> {
    inner: Mutex<Option<T>>,
    closed: watch::Sender<bool>,
}

impl<T> Closable<T> {
    fn new(value: Option<T>) -> Self {
        Closable {
            inner: Mutex::new(value),
            closed: watch::Sender::new(false),
        }
    }

    /// Marks it closed and drops the value now if no one is using it (else the user does).
    fn close(&self) -> Option<T> {
        self.closed.send_replace(true);
        self.inner.try_lock().ok().and_then(|mut g| g.take())
    }
}

/// Most bytes one `read` returns (a larger `n` is capped to this).
pub(crate) const MAX_READ: usize = 1 << 20;

/// Bytes on their way to Python (made a `bytes` once the GIL is held).
pub(crate) struct PyBytesOut(pub Vec<u8>);

impl<'py> IntoPyObject<'py> for PyBytesOut {
    type Target = PyBytes;
    type Output = Bound<'py, PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(PyBytes::new(py, &self.0))
    }
}

/// A bytes-like object's contents (`bytes`, `bytearray`, `memoryview`, ...), copied.
pub(crate) fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if data.is_instance_of::<PyMemoryView>() {
        let b = data.call_method0("tobytes")?;
        return Ok(b.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "expected bytes, bytearray or memoryview, got {}",
        data.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    )))
}

/// Reads up to `n` bytes from `state` (fewer when fewer are there; none at end-of-stream);
/// `close()` interrupts it like end-of-stream.
async fn read_some<T: AsyncRead + Unpin>(
    state: &Closable<T>,
    n: usize,
) -> Result<PyBytesOut, Failure> {
    let mut closed = state.closed.subscribe();
    let mut guard = state.inner.lock().await;
    let Some(src) = guard.as_mut() else {
        return Ok(PyBytesOut(Vec::new()));
    };
    // Not zeroed first: `read_buf` fills the spare capacity.
    let mut buf = Vec::with_capacity(n.clamp(1, MAX_READ));
    let res = tokio::select! {
        r = src.read_buf(&mut buf) => Some(r),
        _ = closed.wait_for(|c| *c) => None,
    };
    match res {
        Some(r) => {
            r?;
            Ok(PyBytesOut(buf))
        }
        None => {
            *guard = None;
            Ok(PyBytesOut(Vec::new()))
        }
    }
}

/// Writes all of `data` to `state`; fails once it is closed.
async fn write_all<T: AsyncWrite + Unpin>(
    state: &Closable<T>,
    data: Vec<u8>,
    what: &str,
) -> Result<(), Failure> {
    let mut closed = state.closed.subscribe();
    let mut guard = state.inner.lock().await;
    let dst = guard
        .as_mut()
        .ok_or_else(|| qtalk_error(format!("the {what} is closed")))?;
    tokio::select! {
        r = dst.write_all(&data) => Ok(r?),
        _ = closed.wait_for(|c| *c) => Err(qtalk_error(format!("the {what} is closed"))),
    }
}

/// A response to a call: `async for value in response`, `await response.send(value)`, and
/// once continued, raw bytes (`read`/`write`, or `streams()` for an asyncio-style pair).
///
/// Its receiving and sending sides are independent: one task may send (or write) while
/// another receives (or reads). It holds the call's channel; `close()` (or leaving
/// `async with`) closes it, and so does dropping the last reference.
#[pyclass(module = "qtalk_rs", name = "Response", frozen)]
pub(crate) struct PyResponse {
    reader: Arc<Closable<ResponseReader>>,
    writer: Arc<Closable<ResponseWriter>>,
    continued: bool,
}

impl PyResponse {
    pub(crate) fn new(resp: Response) -> Self {
        let continued = resp.is_continued();
        let (r, w) = resp.into_split();
        PyResponse {
            continued,
            reader: Arc::new(Closable::new(Some(r))),
            writer: Arc::new(Closable::new(Some(w))),
        }
    }
}

async fn response_next(state: &Closable<ResponseReader>) -> Result<Option<Value>, Failure> {
    let mut closed = state.closed.subscribe();
    let mut guard = state.inner.lock().await;
    let Some(resp) = guard.as_mut() else {
        return Ok(None);
    };
    let res = tokio::select! {
        r = resp.receive_next::<Value>() => Some(r),
        _ = closed.wait_for(|c| *c) => None,
    };
    match res {
        Some(r) => Ok(r?),
        None => {
            *guard = None;
            Ok(None)
        }
    }
}

#[pymethods]
impl PyResponse {
    /// True when the responder kept the channel open after its reply (a stream).
    #[getter]
    fn continued(&self) -> bool {
        self.continued
    }

    /// The next value; `EOFError` once the responder ended the stream.
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.reader.clone();
        spawn_py(py, async move {
            match response_next(&state).await? {
                Some(v) => Ok(PyValue(v)),
                None => Err(PyEOFError::new_err("the response ended").into()),
            }
        })
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.reader.clone();
        spawn_py(py, async move {
            match response_next(&state).await? {
                Some(v) => Ok(PyValue(v)),
                None => Err(PyStopAsyncIteration::new_err(()).into()),
            }
        })
    }

    /// Sends a value to the responder (once it continued).
    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let value = to_value(&value)?;
        let state = self.writer.clone();
        spawn_py(py, async move {
            let mut guard = state.inner.lock().await;
            let resp = guard
                .as_mut()
                .ok_or_else(|| qtalk_error("the response is closed"))?;
            Ok(resp.send(&value).await?)
        })
    }

    /// Up to `n` raw bytes from the responder (after the reply, once it continued); `b""` at
    /// end-of-stream.
    #[pyo3(signature = (n = 65536))]
    fn read<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        let state = self.reader.clone();
        spawn_py(py, async move { read_some(&*state, n).await })
    }

    /// Writes raw bytes to the responder; completes once the channel took them all.
    fn write<'py>(&self, py: Python<'py>, data: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let data = bytes_of(&data)?;
        let state = self.writer.clone();
        spawn_py(
            py,
            async move { write_all(&*state, data, "response").await },
        )
    }

    /// Ends what this side sends (the responder reads end-of-stream); replies still arrive.
    fn close_write<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.writer.clone();
        spawn_py(py, async move {
            let guard = state.inner.lock().await;
            match guard.as_ref() {
                Some(resp) => Ok(resp.close_write()?),
                None => Ok(()),
            }
        })
    }

    /// Closes the channel; a pending `receive` or `read` ends the stream.
    fn close(&self) {
        if let Some(w) = self.writer.close() {
            let _ = w.close();
        }
        drop(self.reader.close());
    }

    /// The raw byte stream as an asyncio-style pair `(reader, writer)` (see
    /// `qtalk_rs.ByteReader` and `qtalk_rs.ByteWriter`).
    fn streams<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("qtalk_rs._streams")?
            .call_method1("pair", (slf,))
    }

    fn __aenter__(slf: Py<Self>, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        spawn_py(py, async move { Ok(slf) })
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc_type: Bound<'py, PyAny>,
        _exc: Bound<'py, PyAny>,
        _tb: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close();
        spawn_py(py, async move { Ok(false) })
    }
}

/// What a running handler shares with its Python `Call` object.
pub(crate) struct CallState {
    selector: String,
    caller: qtalk::rpc::Caller,
    call: Closable<Call>,
    responder: StdMutex<Option<Responder>>,
    continued: AtomicBool,
}

impl CallState {
    pub(crate) fn new(call: Call, responder: Responder) -> Arc<CallState> {
        Arc::new(CallState {
            selector: call.selector().to_string(),
            caller: call.caller().clone(),
            call: Closable::new(Some(call)),
            responder: StdMutex::new(Some(responder)),
            continued: AtomicBool::new(false),
        })
    }

    /// The responder, unless the handler already continued.
    pub(crate) fn take_responder(&self) -> Option<Responder> {
        self.responder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// The handler is done: unless it continued into a stream, let go of the channel.
    pub(crate) fn release(&self) {
        if !self.continued.load(Ordering::Acquire) {
            drop(self.take_responder());
            drop(self.call.close());
        }
    }

    async fn next(&self) -> Result<Option<Value>, Failure> {
        let mut closed = self.call.closed.subscribe();
        let mut guard = self.call.inner.lock().await;
        let Some(call) = guard.as_mut() else {
            return Ok(None);
        };
        let res = tokio::select! {
            r = call.receive_next::<Value>() => Some(r),
            _ = closed.wait_for(|c| *c) => None,
        };
        match res {
            Some(r) => Ok(r?),
            None => {
                *guard = None;
                Ok(None)
            }
        }
    }
}

/// A call being answered, passed to a handler first: `call.selector`, `call.caller` (to call
/// back whoever called), `await call.receive()` for values streamed after the arguments, and
/// `await call.continue_with(value)` to keep the channel open as a stream.
#[pyclass(module = "qtalk_rs", name = "Call", frozen)]
pub(crate) struct PyCall {
    state: Arc<CallState>,
}

impl PyCall {
    pub(crate) fn new(state: Arc<CallState>) -> Self {
        PyCall { state }
    }
}

#[pymethods]
impl PyCall {
    /// The selector called, cleaned (`"/Upper"`).
    #[getter]
    fn selector(&self) -> &str {
        &self.state.selector
    }

    /// Calls the peer that made this call (on the same session).
    #[getter]
    fn caller(&self) -> PyCaller {
        PyCaller::new(self.state.caller.clone())
    }

    /// The next value the caller sent after the arguments; `EOFError` at its end.
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.state.clone();
        spawn_py(py, async move {
            match state.next().await? {
                Some(v) => Ok(PyValue(v)),
                None => Err(PyEOFError::new_err("the caller ended its stream").into()),
            }
        })
    }

    /// Answers with `value` and keeps the channel open: returns a `Stream` to send more
    /// values on (and to receive the caller's). The handler's return value is then ignored.
    #[pyo3(signature = (value = None))]
    fn continue_with<'py>(
        &self,
        py: Python<'py>,
        value: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        continue_call(py, &self.state, value)
    }

    fn __repr__(&self) -> String {
        format!("<qtalk_rs.Call {}>", self.state.selector)
    }
}

/// Answers the call with `value` and keeps its channel open as a [`PyStream`].
fn continue_call<'py>(
    py: Python<'py>,
    state: &Arc<CallState>,
    value: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = match value {
        Some(v) => to_value(&v)?,
        None => Value::Null,
    };
    let responder = state
        .take_responder()
        .ok_or_else(|| qtalk_error("rpc: already responded").into_pyerr(py))?;
    state.continued.store(true, Ordering::Release);
    let state = state.clone();
    spawn_py(py, async move {
        let continued = responder.continue_with(&value).await?;
        Ok(PyStream {
            call: state,
            out: Arc::new(Closable::new(Some(continued))),
        })
    })
}

/// How a low-level handler (`HandlerFunc`) answers: `await responder.ret(value)` (or several
/// values), `await responder.error(text)`, or `await responder.continue_with(value)` for a
/// `Stream`. Once only; a handler that ends without answering answers with what it returned
/// (or the error it raised).
#[pyclass(module = "qtalk_rs", name = "Responder", frozen)]
pub(crate) struct PyResponder {
    state: Arc<CallState>,
}

impl PyResponder {
    pub(crate) fn new(state: Arc<CallState>) -> Self {
        PyResponder { state }
    }

    fn take(&self, py: Python<'_>) -> PyResult<Responder> {
        self.state
            .take_responder()
            .ok_or_else(|| qtalk_error("rpc: already responded").into_pyerr(py))
    }
}

#[pymethods]
impl PyResponder {
    /// Answers with the values (none: `null`; several: a multi-value reply) and ends the call.
    #[pyo3(signature = (*values))]
    fn ret<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut vals = Vec::with_capacity(values.len());
        for v in values.iter() {
            vals.push(to_value(&v)?);
        }
        let r = self.take(py)?;
        let state = self.state.clone();
        spawn_py(py, async move {
            let res = match vals.len() {
                0 => r.ret(&Value::Null).await,
                1 => r.ret(&vals[0]).await,
                _ => r.ret_many(vals).await,
            };
            state.release();
            Ok(res?)
        })
    }

    /// Answers with an error (the caller's `RemoteError`) and ends the call.
    fn error<'py>(&self, py: Python<'py>, message: String) -> PyResult<Bound<'py, PyAny>> {
        let r = self.take(py)?;
        let state = self.state.clone();
        spawn_py(py, async move {
            let res = r.error(message).await;
            state.release();
            Ok(res?)
        })
    }

    /// Answers with `value` and keeps the channel open: returns the `Stream`.
    #[pyo3(signature = (value = None))]
    fn continue_with<'py>(
        &self,
        py: Python<'py>,
        value: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        continue_call(py, &self.state, value)
    }

    /// True once the call was answered.
    #[getter]
    fn responded(&self) -> bool {
        self.state
            .responder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

/// A handler's side of a continued call: `await stream.send(v)`, `async for v in stream`
/// (the caller's values), `stream.close()`.
#[pyclass(module = "qtalk_rs", name = "Stream", frozen)]
pub(crate) struct PyStream {
    call: Arc<CallState>,
    out: Arc<Closable<Continued>>,
}

#[pymethods]
impl PyStream {
    /// Sends a value to the caller.
    fn send<'py>(&self, py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let value = to_value(&value)?;
        let out = self.out.clone();
        spawn_py(py, async move {
            let mut guard = out.inner.lock().await;
            let c = guard
                .as_mut()
                .ok_or_else(|| qtalk_error("the stream is closed"))?;
            Ok(c.send(&value).await?)
        })
    }

    /// The next value from the caller; `EOFError` at its end.
    fn receive<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.call.clone();
        spawn_py(py, async move {
            match state.next().await? {
                Some(v) => Ok(PyValue(v)),
                None => Err(PyEOFError::new_err("the caller ended its stream").into()),
            }
        })
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = self.call.clone();
        spawn_py(py, async move {
            match state.next().await? {
                Some(v) => Ok(PyValue(v)),
                None => Err(PyStopAsyncIteration::new_err(()).into()),
            }
        })
    }

    /// Up to `n` raw bytes from the caller; `b""` at end-of-stream.
    #[pyo3(signature = (n = 65536))]
    fn read<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        let state = self.call.clone();
        spawn_py(py, async move { read_some(&state.call, n).await })
    }

    /// Writes raw bytes to the caller; completes once the channel took them all.
    fn write<'py>(&self, py: Python<'py>, data: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let data = bytes_of(&data)?;
        let out = self.out.clone();
        spawn_py(py, async move { write_all(&*out, data, "stream").await })
    }

    /// The raw byte stream as an asyncio-style pair `(reader, writer)` (see
    /// `qtalk_rs.ByteReader` and `qtalk_rs.ByteWriter`).
    fn streams<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("qtalk_rs._streams")?
            .call_method1("pair", (slf,))
    }

    /// Ends what the handler sends (the caller's iteration ends); the caller can still send.
    fn close_write<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let out = self.out.clone();
        spawn_py(py, async move {
            let guard = out.inner.lock().await;
            match guard.as_ref() {
                Some(c) => Ok(c.close_write()?),
                None => Ok(()),
            }
        })
    }

    /// Closes the channel.
    fn close(&self) {
        if let Some(c) = self.out.close() {
            let _ = c.close();
        }
        drop(self.call.call.close());
    }
}
