//! Connected peers ([`PyPeer`]) and callers ([`PyCaller`]).

use std::sync::{Arc, Mutex as StdMutex};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use qtalk::codec::Codec;
use qtalk::rpc::{Caller, Peer, RespondMux};
use qtalk::Value;

use crate::bridge::{running_loop, spawn_py};
use crate::call::PyResponse;
use crate::codec_by_name;
use crate::convert::{to_value, PyValue};
use crate::endpoint::{Endpoint, Trust};
use crate::handler::{LoopBound, PyMux};

/// Positional arguments as the argument array.
fn args_value(args: &Bound<'_, PyTuple>) -> PyResult<Value> {
    let mut out = Vec::with_capacity(args.len());
    for a in args.iter() {
        out.push(to_value(&a)?);
    }
    Ok(Value::Array(out))
}

fn call<'py>(
    py: Python<'py>,
    caller: &Caller,
    selector: String,
    args: Value,
) -> PyResult<Bound<'py, PyAny>> {
    let caller = caller.clone();
    spawn_py(py, async move {
        let v: Value = caller.call(&selector, &args).await?;
        Ok(PyValue(v))
    })
}

fn call_raw<'py>(
    py: Python<'py>,
    caller: &Caller,
    selector: String,
    args: Value,
) -> PyResult<Bound<'py, PyAny>> {
    let caller = caller.clone();
    spawn_py(py, async move {
        let resp = caller.call_raw(&selector, &args).await?;
        Ok(PyResponse::new(resp))
    })
}

/// Makes calls on a session (what a handler's `call.caller` is).
#[pyclass(module = "qtalk_rs", name = "Caller", frozen)]
pub(crate) struct PyCaller {
    caller: Caller,
}

impl PyCaller {
    pub(crate) fn new(caller: Caller) -> Self {
        PyCaller { caller }
    }
}

#[pymethods]
impl PyCaller {
    /// `await caller.call("Upper", "hello")`: calls `selector` with the positional arguments
    /// (sent as an array, as Go's `fn.Args`) and returns the reply value.
    #[pyo3(signature = (selector, *args))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(py, &self.caller, selector, args_value(args)?)
    }

    /// Calls `selector` with `value` itself as the argument (not wrapped in an array).
    fn call_value<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(py, &self.caller, selector, to_value(&value)?)
    }

    /// Calls `selector` with `value` itself as the argument; the `Response` once its header
    /// arrived.
    fn call_raw_value<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call_raw(py, &self.caller, selector, to_value(&value)?)
    }

    /// Calls `selector` and returns the `Response` once its header arrived, to receive
    /// several values from it (and send more, when the responder continued).
    #[pyo3(signature = (selector, *args))]
    fn call_raw<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call_raw(py, &self.caller, selector, args_value(args)?)
    }

    /// The codec's name (`"json"` or `"cbor"`).
    #[getter]
    fn codec(&self) -> &'static str {
        self.caller.codec().name()
    }
}

/// A connected session: calls the other side and answers its calls (callbacks) with the
/// handlers of its mux. Close it with `close()` or `async with`; dropping the last
/// reference closes it too.
#[pyclass(module = "qtalk_rs", name = "Peer", frozen)]
pub(crate) struct PyPeer {
    peer: Peer,
    mux: Py<PyMux>,
    child: StdMutex<Option<tokio::process::Child>>,
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        self.peer.close();
    }
}

#[pymethods]
impl PyPeer {
    /// `await peer.call("Upper", "hello")`: calls `selector` with the positional arguments
    /// (sent as an array, as Go's `fn.Args`) and returns the reply value. A responder's error
    /// raises `RemoteError`; cancelling (e.g. `asyncio.wait_for`) closes the call's channel.
    #[pyo3(signature = (selector, *args))]
    fn call<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(py, self.peer.caller(), selector, args_value(args)?)
    }

    /// Calls `selector` with `value` itself as the argument (not wrapped in an array).
    fn call_value<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call(py, self.peer.caller(), selector, to_value(&value)?)
    }

    /// Calls `selector` with `value` itself as the argument; the `Response` once its header
    /// arrived.
    fn call_raw_value<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call_raw(py, self.peer.caller(), selector, to_value(&value)?)
    }

    /// Calls `selector` and returns the `Response` once its header arrived.
    #[pyo3(signature = (selector, *args))]
    fn call_raw<'py>(
        &self,
        py: Python<'py>,
        selector: String,
        args: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        call_raw(py, self.peer.caller(), selector, args_value(args)?)
    }

    /// Registers a handler for calls from the other side (see `RespondMux.handle`).
    fn handle<'py>(
        &self,
        py: Python<'py>,
        pattern: &str,
        handler: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.mux.bind(py).call_method1("handle", (pattern, handler))
    }

    /// The mux answering the other side's calls.
    #[getter]
    fn mux(&self, py: Python<'_>) -> Py<PyMux> {
        self.mux.clone_ref(py)
    }

    /// The caller of this session.
    #[getter]
    fn caller(&self) -> PyCaller {
        PyCaller::new(self.peer.caller().clone())
    }

    /// The codec's name (`"json"` or `"cbor"`).
    #[getter]
    fn codec(&self) -> &'static str {
        self.peer.caller().codec().name()
    }

    /// True once the session ended.
    #[getter]
    fn closed(&self) -> bool {
        self.peer.session().is_closed()
    }

    /// Closes the session (calls in flight fail, both ways).
    fn close(&self) {
        self.peer.close();
        if let Some(child) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = child.start_kill();
        }
    }

    /// Waits until the session ends (the other side closed it, or `close()`); returns the
    /// reason.
    fn wait_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let session = self.peer.session().clone();
        spawn_py(py, async move {
            Ok::<_, crate::bridge::Failure>(session.wait().await.to_string())
        })
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

    fn __repr__(&self) -> String {
        format!(
            "<qtalk_rs.Peer codec={} closed={}>",
            self.codec(),
            self.closed()
        )
    }
}

/// The mux to answer with: the one given, or a new one.
fn mux_or_new(py: Python<'_>, mux: Option<Bound<'_, PyAny>>) -> PyResult<Py<PyMux>> {
    match mux {
        None => Py::new(py, PyMux::new_empty()),
        Some(m) => match m.cast::<PyMux>() {
            Ok(m) => Ok(m.clone().unbind()),
            Err(_) => Err(PyTypeError::new_err("mux must be a qtalk_rs.RespondMux")),
        },
    }
}

/// Starts a peer on `session`: it answers calls with `mux` on the running event loop.
fn start_peer(
    session: qtalk::mux::Session,
    codec: Arc<dyn Codec>,
    mux: Arc<RespondMux>,
    event_loop: Arc<Py<PyAny>>,
) -> Peer {
    let peer = Peer::new(session, codec).handler(LoopBound { mux, event_loop });
    peer.respond();
    peer
}

/// `peer = await connect("tcp://127.0.0.1:9999", codec="json", mux=None)`; for `tls://`,
/// `wss://` and `quic://`, `ca="roots.pem"` or `insecure=True` choose which certificates
/// are accepted (default: the system's roots).
#[pyfunction]
#[pyo3(signature = (url, codec = "json", mux = None, *, ca = None, insecure = false))]
pub(crate) fn connect<'py>(
    py: Python<'py>,
    url: &str,
    codec: &str,
    mux: Option<Bound<'py, PyAny>>,
    ca: Option<std::path::PathBuf>,
    insecure: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let endpoint = Endpoint::parse(url)?;
    let trust = Trust::new(ca, insecure)?;
    let codec = codec_by_name(codec)?;
    let mux = mux_or_new(py, mux)?;
    let routes = mux.get().mux.clone();
    let event_loop = running_loop(py)?;
    spawn_py(py, async move {
        let session = endpoint.connect(&trust).await?;
        let peer = start_peer(session, codec, routes, event_loop);
        Ok(PyPeer {
            peer,
            mux,
            child: StdMutex::new(None),
        })
    })
}

/// `peer = await connect_command(["prog", "arg"])`: runs a command and talks qtalk over its
/// stdin and stdout (its stderr is this process's). Closing the peer kills the command.
#[pyfunction]
#[pyo3(signature = (argv, codec = "json", mux = None))]
pub(crate) fn connect_command<'py>(
    py: Python<'py>,
    argv: Vec<String>,
    codec: &str,
    mux: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let Some((program, args)) = argv.split_first() else {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "argv is empty: give the program and its arguments",
        ));
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    let codec = codec_by_name(codec)?;
    let mux = mux_or_new(py, mux)?;
    let routes = mux.get().mux.clone();
    let event_loop = running_loop(py)?;
    spawn_py(py, async move {
        let (session, child) =
            qtalk::mux::transport::spawn_command(command, qtalk::mux::Config::default())?;
        let peer = start_peer(session, codec, routes, event_loop);
        Ok(PyPeer {
            peer,
            mux,
            child: StdMutex::new(Some(child)),
        })
    })
}

/// `peer = await connect_stdio()`: talks qtalk over this process's stdin and stdout (for a
/// program another one spawned). Nothing else may write to stdout meanwhile.
#[pyfunction]
#[pyo3(signature = (codec = "json", mux = None))]
pub(crate) fn connect_stdio<'py>(
    py: Python<'py>,
    codec: &str,
    mux: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let codec = codec_by_name(codec)?;
    let mux = mux_or_new(py, mux)?;
    let routes = mux.get().mux.clone();
    let event_loop = running_loop(py)?;
    spawn_py(py, async move {
        let session = qtalk::mux::transport::stdio(qtalk::mux::Config::default());
        let peer = start_peer(session, codec, routes, event_loop);
        Ok(PyPeer {
            peer,
            mux,
            child: StdMutex::new(None),
        })
    })
}
