//! Streams of values: a caller's [`PyResponse`], a handler's [`PyCall`] and the [`PyStream`]
//! it continues into.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use bytes::Bytes;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyTuple};
use qtalk::rpc::{Call, Continued, Responder, Response, ResponseReader, ResponseWriter};
use qtalk::Value;

use crate::bridge::Op;
use crate::convert::Conv;
use crate::errors::{qtalk_error, Failure};
use crate::peer::PyCaller;
use crate::recv::{Closable, Recv, RecvOp, Want};

/// Payloads from this size on are sent without copying (the `bytes` object is kept alive
/// until the bytes went out); smaller ones are copied, which costs less than keeping it.
const ZERO_COPY_FROM: usize = 16 * 1024;

/// A `bytes` object's contents, kept alive while the channel holds them.
struct PyBytesOwner {
    _obj: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: a `bytes` object is immutable, and `_obj` keeps it (and so its buffer) alive for as
// long as the owner lives; the pointer is only read. Dropping `_obj` without the GIL defers the
// decref to pyo3's pool.
unsafe impl Send for PyBytesOwner {}

impl AsRef<[u8]> for PyBytesOwner {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `Send` above: the buffer lives and does not change while `_obj` does.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A bytes-like object's contents as `Bytes`: `bytes` of 16 KiB or more without a copy,
/// anything else (`bytearray`, `memoryview`, which may change after the call) copied.
pub(crate) fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = data.cast::<PyBytes>() {
        let slice = b.as_bytes();
        if slice.len() < ZERO_COPY_FROM {
            return Ok(Bytes::copy_from_slice(slice));
        }
        return Ok(Bytes::from_owner(PyBytesOwner {
            ptr: slice.as_ptr(),
            len: slice.len(),
            _obj: b.clone().unbind(),
        }));
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(Bytes::from(b.to_vec()));
    }
    if data.is_instance_of::<PyMemoryView>() {
        let b = data.call_method0("tobytes")?;
        return Ok(Bytes::copy_from_slice(b.cast::<PyBytes>()?.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "expected bytes, bytearray or memoryview, got {}",
        data.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    )))
}

/// Sends `value` on `out` (the writing side of a continued call), in order with other writes.
fn send_op(out: &Arc<Closable<Continued>>, value: Value, what: &'static str) -> Op {
    let out = out.clone();
    Op::inline(
        "send",
        async move {
            let mut guard = out.inner.lock().await;
            let c = guard
                .as_mut()
                .ok_or_else(|| qtalk_error(format!("the {what} is closed")))?;
            c.send(&value).await?;
            Ok::<_, Failure>(())
        },
        false,
    )
}

/// Writes all of `data` to `out`; fails once it is closed.
fn write_op(out: &Arc<Closable<Continued>>, data: Bytes, what: &'static str) -> Op {
    let out = out.clone();
    Op::inline(
        "write",
        async move {
            let mut closed = out.closed.subscribe();
            let mut guard = out.inner.lock().await;
            let dst = guard
                .as_mut()
                .ok_or_else(|| qtalk_error(format!("the {what} is closed")))?;
            tokio::select! {
                r = dst.write_bytes(data) => Ok(r?),
                _ = closed.wait_for(|c| *c) => Err(qtalk_error(format!("the {what} is closed"))),
            }
        },
        false,
    )
}

/// Ends what `out` sends (the other side reads end-of-stream).
fn close_write_op(out: &Arc<Closable<Continued>>) -> Op {
    let out = out.clone();
    Op::inline(
        "close_write",
        async move {
            let guard = out.inner.lock().await;
            match guard.as_ref() {
                Some(c) => Ok(c.close_write()?),
                None => Ok::<_, Failure>(()),
            }
        },
        false,
    )
}

fn recv_op(recv: &Arc<Recv>, want: Want, conv: &Conv) -> Op {
    Op::new(
        "receive",
        crate::bridge::Start::Recv(RecvOp {
            recv: recv.clone(),
            want,
            conv: conv.clone(),
        }),
    )
}

/// A response to a call: `async for value in response`, `await response.send(value)`, and
/// once continued, raw bytes (`read`/`write`, or `streams()` for an asyncio-style pair).
///
/// Its receiving and sending sides are independent: one task may send (or write) while
/// another receives (or reads). A receive or read cancelled while it waits loses nothing:
/// what arrives goes to the next one. It holds the call's channel; `close()` (or leaving
/// `async with`) closes it, and so does dropping the last reference.
#[pyclass(module = "qtalk_rs._native", name = "Response", frozen)]
pub(crate) struct PyResponse {
    reader: Arc<Closable<ResponseReader>>,
    recv: Arc<Recv>,
    writer: Arc<Closable<ResponseWriter>>,
    continued: bool,
    conv: Conv,
}

impl PyResponse {
    pub(crate) fn new(resp: Response, conv: Conv) -> Self {
        let continued = resp.is_continued();
        let (r, w) = resp.into_split();
        let reader = Arc::new(Closable::new(Some(r)));
        PyResponse {
            continued,
            recv: Recv::new(reader.clone()),
            reader,
            writer: Arc::new(Closable::new(Some(w))),
            conv,
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
    fn receive(&self) -> Op {
        recv_op(&self.recv, Want::Value { iterating: false }, &self.conv)
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__(&self) -> Op {
        recv_op(&self.recv, Want::Value { iterating: true }, &self.conv)
    }

    /// Sends a value to the responder (once it continued).
    fn send(&self, value: &Bound<'_, PyAny>) -> PyResult<Op> {
        Ok(send_op(
            &self.writer,
            self.conv.to_value(value)?,
            "response",
        ))
    }

    /// Up to `n` raw bytes from the responder (after the reply, once it continued); `b""` at
    /// end-of-stream.
    #[pyo3(signature = (n = 65536))]
    fn read(&self, n: usize) -> Op {
        recv_op(&self.recv, Want::Bytes(n), &self.conv)
    }

    /// Writes raw bytes to the responder; completes once the channel took them all.
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<Op> {
        Ok(write_op(&self.writer, bytes_of(data)?, "response"))
    }

    /// Ends what this side sends (the responder reads end-of-stream); replies still arrive.
    fn close_write(&self) -> Op {
        close_write_op(&self.writer)
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

    fn __aenter__(slf: Py<Self>) -> Op {
        Op::ready("__aenter__", Ok(slf.into_any()))
    }

    fn __aexit__(
        &self,
        py: Python<'_>,
        _exc_type: Bound<'_, PyAny>,
        _exc: Bound<'_, PyAny>,
        _tb: Bound<'_, PyAny>,
    ) -> Op {
        self.close();
        Op::ready(
            "__aexit__",
            Ok(pyo3::types::PyBool::new(py, false)
                .to_owned()
                .into_any()
                .unbind()),
        )
    }
}

/// What a running handler shares with its Python `Call` object.
pub(crate) struct CallState {
    selector: String,
    context: qtalk::rpc::CallContext,
    caller: qtalk::rpc::Caller,
    call: Arc<Closable<Call>>,
    recv: Arc<Recv>,
    responder: StdMutex<Option<Responder>>,
    continued: AtomicBool,
    conv: Conv,
}

impl CallState {
    pub(crate) fn new(call: Call, responder: Responder) -> Arc<CallState> {
        let selector = call.selector().to_string();
        let context = call.context().clone();
        let caller = call.caller().clone();
        let call = Arc::new(Closable::new(Some(call)));
        Arc::new(CallState {
            selector,
            context,
            conv: Conv::session(&caller),
            caller,
            recv: Recv::new(call.clone()),
            call,
            responder: StdMutex::new(Some(responder)),
            continued: AtomicBool::new(false),
        })
    }

    pub(crate) fn selector(&self) -> &str {
        &self.selector
    }

    pub(crate) fn caller(&self) -> &qtalk::rpc::Caller {
        &self.caller
    }

    /// The responder, unless the handler already answered or continued.
    pub(crate) fn take_responder(&self) -> Option<Responder> {
        self.responder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// True once the handler answered without continuing.
    pub(crate) fn answered(&self) -> bool {
        !self.continued.load(Ordering::Acquire)
            && self
                .responder
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none()
    }

    /// The handler is done: unless it continued into a stream, let go of the channel.
    pub(crate) fn release(&self) {
        if !self.continued.load(Ordering::Acquire) {
            drop(self.take_responder());
            drop(self.call.close());
        }
    }

    fn receive(&self, iterating: bool) -> Op {
        recv_op(&self.recv, Want::Value { iterating }, &self.conv)
    }
}

/// A call being answered, passed to a handler first: `call.selector`, `call.caller` (to call
/// back whoever called), `await call.receive()` for values streamed after the arguments, and
/// `await call.continue_with(value)` to keep the channel open as a stream.
#[pyclass(module = "qtalk_rs._native", name = "Call", frozen)]
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

    /// The call's metadata, as the caller sent it (a new dict each time).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        crate::context::metadata_dict(py, &self.state.context)
    }

    /// Seconds left until the caller's deadline (0.0 once passed), or None without one.
    #[getter]
    fn remaining(&self) -> Option<f64> {
        crate::context::remaining(&self.state.context)
    }

    /// The connection the call came over (addresses, TLS peer certificates, ...).
    #[getter]
    fn connection(&self) -> crate::context::PyConnection {
        crate::context::PyConnection::new(self.state.caller.session().connection_info().clone())
    }

    /// The next value the caller sent after the arguments; `EOFError` at its end.
    fn receive(&self) -> Op {
        self.state.receive(false)
    }

    /// Answers with `value` and keeps the channel open: returns a `Stream` to send more
    /// values on (and to receive the caller's). The handler's return value is then ignored.
    #[pyo3(signature = (value = None))]
    fn continue_with(&self, py: Python<'_>, value: Option<Bound<'_, PyAny>>) -> PyResult<Op> {
        continue_call(py, &self.state, value)
    }

    fn __repr__(&self) -> String {
        format!("<qtalk_rs.Call {}>", self.state.selector)
    }
}

/// Answers the call with `value` and keeps its channel open as a [`PyStream`].
fn continue_call(
    py: Python<'_>,
    state: &Arc<CallState>,
    value: Option<Bound<'_, PyAny>>,
) -> PyResult<Op> {
    let value = match value {
        Some(v) => state.conv.to_value(&v)?,
        None => Value::Null,
    };
    let responder = state
        .take_responder()
        .ok_or_else(|| qtalk_error("rpc: already responded").into_pyerr(py))?;
    state.continued.store(true, Ordering::Release);
    let state = state.clone();
    Ok(Op::spawn("continue_with", async move {
        let continued = responder.continue_with(&value).await?;
        Ok(PyStream {
            call: state,
            out: Arc::new(Closable::new(Some(continued))),
        })
    }))
}

/// How a low-level handler (`HandlerFunc`) answers: `await responder.ret(value)` (or several
/// values), `await responder.error(text)`, or `await responder.continue_with(value)` for a
/// `Stream`. Once only; a handler that ends without answering answers with what it returned
/// (or the error it raised).
#[pyclass(module = "qtalk_rs._native", name = "Responder", frozen)]
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
    fn ret(&self, py: Python<'_>, values: &Bound<'_, PyTuple>) -> PyResult<Op> {
        let mut vals = Vec::with_capacity(values.len());
        for v in values.iter() {
            vals.push(self.state.conv.to_value(&v)?);
        }
        let r = self.take(py)?;
        let state = self.state.clone();
        Ok(Op::spawn("ret", async move {
            let res = match vals.len() {
                0 => r.ret(&Value::Null).await,
                1 => r.ret(&vals[0]).await,
                _ => r.ret_many(vals).await,
            };
            state.release();
            Ok::<_, Failure>(res?)
        }))
    }

    /// Answers with an error (the caller's `RemoteError`) and ends the call.
    fn error(&self, py: Python<'_>, message: String) -> PyResult<Op> {
        let r = self.take(py)?;
        let state = self.state.clone();
        Ok(Op::spawn("error", async move {
            let res = r.error(message).await;
            state.release();
            Ok::<_, Failure>(res?)
        }))
    }

    /// Answers with `value` and keeps the channel open: returns the `Stream`.
    #[pyo3(signature = (value = None))]
    fn continue_with(&self, py: Python<'_>, value: Option<Bound<'_, PyAny>>) -> PyResult<Op> {
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
/// (the caller's values), `stream.close()`. Receives and reads cancelled while waiting lose
/// nothing.
#[pyclass(module = "qtalk_rs._native", name = "Stream", frozen)]
pub(crate) struct PyStream {
    call: Arc<CallState>,
    out: Arc<Closable<Continued>>,
}

#[pymethods]
impl PyStream {
    /// Sends a value to the caller.
    fn send(&self, value: &Bound<'_, PyAny>) -> PyResult<Op> {
        Ok(send_op(
            &self.out,
            self.call.conv.to_value(value)?,
            "stream",
        ))
    }

    /// The next value from the caller; `EOFError` at its end.
    fn receive(&self) -> Op {
        self.call.receive(false)
    }

    fn __aiter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __anext__(&self) -> Op {
        self.call.receive(true)
    }

    /// Up to `n` raw bytes from the caller; `b""` at end-of-stream.
    #[pyo3(signature = (n = 65536))]
    fn read(&self, n: usize) -> Op {
        recv_op(&self.call.recv, Want::Bytes(n), &self.call.conv)
    }

    /// Writes raw bytes to the caller; completes once the channel took them all.
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<Op> {
        Ok(write_op(&self.out, bytes_of(data)?, "stream"))
    }

    /// The raw byte stream as an asyncio-style pair `(reader, writer)` (see
    /// `qtalk_rs.ByteReader` and `qtalk_rs.ByteWriter`).
    fn streams<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py()
            .import("qtalk_rs._streams")?
            .call_method1("pair", (slf,))
    }

    /// Ends what the handler sends (the caller's iteration ends); the caller can still send.
    fn close_write(&self) -> Op {
        close_write_op(&self.out)
    }

    /// Closes the channel.
    fn close(&self) {
        if let Some(c) = self.out.close() {
            let _ = c.close();
        }
        drop(self.call.call.close());
    }
}
