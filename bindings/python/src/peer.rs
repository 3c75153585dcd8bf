//! Connected peers ([`PyPeer`]), callers ([`PyCaller`]) and the ways to connect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use qtalk::codec::Codec;
use qtalk::rpc::{CallContext, Caller, Peer, RespondMux};
use qtalk::Value;

use crate::bridge::{running_queue, Op, Queue};
use crate::call::PyResponse;
use crate::callback::PyCallback;
use crate::codec_by_name;
use crate::config::{config_of, options_of, timeout, PyConfig, PyOptions};
use crate::convert::{Conv, PyValue};
use crate::endpoint::{Endpoint, Trust};
use crate::errors::{Failure, Kind};
use crate::handler::{LoopBound, PyMux};

/// Per-call options (`timeout=`, `metadata=`).
#[derive(Clone, Default)]
pub(crate) struct CallOptions {
    timeout: Option<Duration>,
    metadata: Option<Vec<(String, String)>>,
}

impl CallOptions {
    pub(crate) fn new(timeout_secs: Option<f64>) -> PyResult<CallOptions> {
        Ok(CallOptions {
            timeout: timeout(timeout_secs)?,
            metadata: None,
        })
    }

    pub(crate) fn with_metadata(mut self, metadata: Option<Vec<(String, String)>>) -> CallOptions {
        self.metadata = metadata;
        self
    }
}

/// What a peer adds to every call it makes: default metadata, and client middleware
/// (`hook(selector, metadata)`, run as the call is made; it may change the metadata, or raise
/// to stop the call).
#[derive(Default)]
pub(crate) struct ClientSide {
    metadata: Vec<(String, String)>,
    hooks: Vec<Py<PyAny>>,
}

impl ClientSide {
    /// The context of a call of `selector` with `opts`: metadata (the peer's, the call's, then
    /// what the middleware made of them) and deadline (`timeout`, sent with the call).
    fn context(&self, py: Python<'_>, selector: &str, opts: &CallOptions) -> PyResult<CallContext> {
        let mut ctx = CallContext::new();
        if let Some(d) = opts.timeout {
            ctx = ctx.with_timeout(d);
        }
        let call_meta = opts.metadata.iter().flatten();
        if self.hooks.is_empty() {
            for (k, v) in self.metadata.iter().chain(call_meta) {
                ctx = ctx.with_metadata(k.clone(), v.clone());
            }
            return Ok(ctx);
        }
        let meta = pyo3::types::PyDict::new(py);
        for (k, v) in self.metadata.iter().chain(call_meta) {
            meta.set_item(k, v)?;
        }
        for hook in &self.hooks {
            hook.bind(py).call1((selector, &meta))?;
        }
        for (k, v) in meta.iter() {
            ctx = ctx.with_metadata(k.extract::<String>()?, v.extract::<String>()?);
        }
        Ok(ctx)
    }
}

/// The call's argument value: the positional arguments as an array (`spread`), or the one
/// value given.
fn args_value(conv: &Conv, args: &Bound<'_, PyAny>, spread: bool) -> PyResult<Value> {
    if !spread {
        return conv.to_value(args);
    }
    let args = args.cast::<PyTuple>()?;
    let mut out = Vec::with_capacity(args.len());
    for a in args.iter() {
        out.push(conv.to_value(&a)?);
    }
    Ok(Value::Array(out))
}

/// A call of `selector` on `caller`, as a coroutine of its reply.
pub(crate) fn call_op(
    caller: &Caller,
    selector: String,
    args: &Bound<'_, PyAny>,
    spread: bool,
    opts: CallOptions,
) -> PyResult<Op> {
    call_op_in(caller, None, selector, args, spread, opts)
}

fn call_op_in(
    caller: &Caller,
    side: Option<&ClientSide>,
    selector: String,
    args: &Bound<'_, PyAny>,
    spread: bool,
    opts: CallOptions,
) -> PyResult<Op> {
    let ctx = side
        .unwrap_or(&ClientSide::default())
        .context(args.py(), &selector, &opts)?;
    let conv = Conv::session(caller);
    let args = args_value(&conv, args, spread)?;
    let caller = caller.clone();
    Ok(Op::spawn("call", async move {
        let v: Value = caller.call_with(&ctx, &selector, &args).await?;
        Ok(PyValue(v, conv))
    }))
}

/// A call of `selector` on `caller`, as a coroutine of its `Response`.
fn call_raw_op(
    caller: &Caller,
    side: Option<&ClientSide>,
    selector: String,
    args: &Bound<'_, PyAny>,
    spread: bool,
    opts: CallOptions,
) -> PyResult<Op> {
    let ctx = side
        .unwrap_or(&ClientSide::default())
        .context(args.py(), &selector, &opts)?;
    let conv = Conv::session(caller);
    let args = args_value(&conv, args, spread)?;
    let caller = caller.clone();
    Ok(Op::spawn("call_raw", async move {
        let resp = caller.call_raw_with(&ctx, &selector, &args).await?;
        Ok(PyResponse::new(resp, conv))
    }))
}

/// Makes calls on a session (what a handler's `call.caller` is).
#[pyclass(module = "qtalk_rs._native", name = "Caller", frozen)]
pub(crate) struct PyCaller {
    caller: Caller,
    side: Arc<ClientSide>,
}

impl PyCaller {
    pub(crate) fn new(caller: Caller) -> Self {
        PyCaller {
            caller,
            side: Arc::default(),
        }
    }
}

#[pymethods]
impl PyCaller {
    /// `await caller.call("Upper", "hello")`: calls `selector` with the positional arguments
    /// (sent as an array, as Go's `fn.Args`) and returns the reply value.
    #[pyo3(signature = (selector, *args, timeout = None, metadata = None))]
    fn call(
        &self,
        selector: String,
        args: &Bound<'_, PyTuple>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_op_in(
            &self.caller,
            Some(&self.side),
            selector,
            args.as_any(),
            true,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Calls `selector` with `value` itself as the argument (not wrapped in an array).
    #[pyo3(signature = (selector, value, *, timeout = None, metadata = None))]
    fn call_value(
        &self,
        selector: String,
        value: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_op_in(
            &self.caller,
            Some(&self.side),
            selector,
            value,
            false,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Calls `selector` with `value` itself as the argument; the `Response` once its header
    /// arrived.
    #[pyo3(signature = (selector, value, *, timeout = None, metadata = None))]
    fn call_raw_value(
        &self,
        selector: String,
        value: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_raw_op(
            &self.caller,
            Some(&self.side),
            selector,
            value,
            false,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Calls `selector` and returns the `Response` once its header arrived, to receive
    /// several values from it (and send more, when the responder continued).
    #[pyo3(signature = (selector, *args, timeout = None, metadata = None))]
    fn call_raw(
        &self,
        selector: String,
        args: &Bound<'_, PyTuple>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_raw_op(
            &self.caller,
            Some(&self.side),
            selector,
            args.as_any(),
            true,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Registers `fn` as a callback on this session, to send as a value (many times) and
    /// `unregister()` when done.
    fn callback(&self, func: &Bound<'_, PyAny>) -> PyResult<PyCallback> {
        PyCallback::local(func, &self.caller)
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
#[pyclass(module = "qtalk_rs._native", name = "Peer", frozen)]
pub(crate) struct PyPeer {
    peer: Peer,
    side: Arc<ClientSide>,
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
    #[pyo3(signature = (selector, *args, timeout = None, metadata = None))]
    fn call(
        &self,
        selector: String,
        args: &Bound<'_, PyTuple>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_op_in(
            self.peer.caller(),
            Some(&self.side),
            selector,
            args.as_any(),
            true,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Calls `selector` with `value` itself as the argument (not wrapped in an array).
    #[pyo3(signature = (selector, value, *, timeout = None, metadata = None))]
    fn call_value(
        &self,
        selector: String,
        value: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_op_in(
            self.peer.caller(),
            Some(&self.side),
            selector,
            value,
            false,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Calls `selector` with `value` itself as the argument; the `Response` once its header
    /// arrived.
    #[pyo3(signature = (selector, value, *, timeout = None, metadata = None))]
    fn call_raw_value(
        &self,
        selector: String,
        value: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_raw_op(
            self.peer.caller(),
            Some(&self.side),
            selector,
            value,
            false,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Calls `selector` and returns the `Response` once its header arrived.
    #[pyo3(signature = (selector, *args, timeout = None, metadata = None))]
    fn call_raw(
        &self,
        selector: String,
        args: &Bound<'_, PyTuple>,
        timeout: Option<f64>,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_raw_op(
            self.peer.caller(),
            Some(&self.side),
            selector,
            args.as_any(),
            true,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Registers `fn` as a callback on this session, to send as a value (many times) and
    /// `unregister()` when done. (A function sent as a value is registered by itself, for the
    /// life of the session.)
    fn callback(&self, func: &Bound<'_, PyAny>) -> PyResult<PyCallback> {
        PyCallback::local(func, self.peer.caller())
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

    /// The caller of this session (with the peer's metadata and middleware).
    #[getter]
    fn caller(&self) -> PyCaller {
        PyCaller {
            caller: self.peer.caller().clone(),
            side: self.side.clone(),
        }
    }

    /// The connection of this session (addresses, TLS peer certificates, ...).
    #[getter]
    fn connection(&self) -> crate::context::PyConnection {
        crate::context::PyConnection::new(self.peer.session().connection_info().clone())
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
    fn wait_closed(&self) -> Op {
        let session = self.peer.session().clone();
        Op::spawn("wait_closed", async move {
            Ok::<_, Failure>(session.wait().await.to_string())
        })
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

/// What every way of connecting shares: the codec, the mux, the options, the running loop.
struct PeerSetup {
    side: Arc<ClientSide>,
    codec: Arc<dyn Codec>,
    mux: Py<PyMux>,
    routes: Arc<RespondMux>,
    options: qtalk::rpc::Options,
    queue: Arc<Queue>,
}

impl PeerSetup {
    fn new(
        py: Python<'_>,
        codec: &str,
        mux: Option<Bound<'_, PyAny>>,
        options: Option<PyRef<'_, PyOptions>>,
    ) -> PyResult<PeerSetup> {
        let codec = codec_by_name(codec)?;
        let mux = mux_or_new(py, mux)?;
        let routes = mux.get().mux.clone();
        let (_, queue) = running_queue(py)?;
        crate::logbridge::refresh_level(py);
        Ok(PeerSetup {
            side: Arc::default(),
            codec,
            mux,
            routes,
            options: options_of(options),
            queue,
        })
    }

    /// Starts a peer on `session`: it answers calls with the mux on the captured loop.
    fn start(self, session: qtalk::mux::Session, child: Option<tokio::process::Child>) -> PyPeer {
        let peer = Peer::with_options(session, self.codec, self.options).handler(LoopBound {
            handler: self.routes,
            queue: self.queue,
        });
        peer.respond();
        PyPeer {
            peer,
            side: self.side,
            mux: self.mux,
            child: StdMutex::new(child),
        }
    }
}

/// `peer = await connect("tcp://127.0.0.1:9999")`, or `async with connect(...) as peer`.
/// For `tls://`, `wss://` and `quic://`, `ca="roots.pem"` or `insecure=True` choose which
/// certificates are accepted (default: the system's roots).
#[pyfunction]
#[pyo3(signature = (url, *, codec = "json", mux = None, ca = None, insecure = false,
    cert = None, key = None, timeout = None, metadata = None, middleware = None, config = None,
    options = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect(
    py: Python<'_>,
    url: &str,
    codec: &str,
    mux: Option<Bound<'_, PyAny>>,
    ca: Option<std::path::PathBuf>,
    insecure: bool,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    timeout: Option<f64>,
    metadata: Option<HashMap<String, String>>,
    middleware: Option<Vec<Bound<'_, PyAny>>>,
    config: Option<PyRef<'_, PyConfig>>,
    options: Option<PyRef<'_, PyOptions>>,
) -> PyResult<Op> {
    let endpoint = Endpoint::parse(url)?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give both cert= and key=")),
    };
    if identity.is_some() && !endpoint.is_secure() {
        return Err(PyValueError::new_err(
            "cert= and key= (a client certificate) apply to tls://, wss:// and quic:// only",
        ));
    }
    let trust = Trust::new(ca, insecure)?.with_identity(identity);
    let mut hooks = Vec::new();
    for h in middleware.into_iter().flatten() {
        if !h.is_callable() {
            return Err(PyTypeError::new_err(
                "middleware= takes functions hook(selector, metadata)",
            ));
        }
        hooks.push(h.unbind());
    }
    let side = Arc::new(ClientSide {
        metadata: metadata
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
        hooks,
    });
    let limit = crate::config::timeout(timeout)?;
    let config = config_of(config);
    codec_by_name(codec)?;
    let codec = codec.to_string();
    let mux = mux.map(|m| mux_or_new(py, Some(m))).transpose()?;
    let options = options.map(|o| o.options.clone());
    let url = url.to_string();
    Ok(Op::deferred("connect", move |py| {
        let mut setup = PeerSetup::new(py, &codec, mux.map(|m| m.into_bound(py).into_any()), None)?;
        if let Some(o) = options {
            setup.options = o;
        }
        setup.side = side;
        Ok(Op::spawn("connect", async move {
            let connecting = endpoint.connect(&trust, config);
            let session = match limit {
                None => connecting.await?,
                Some(d) => match tokio::time::timeout(d, connecting).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(Failure::Kind(
                            Kind::Timeout,
                            format!(
                                "qtalk: connecting to {url} timed out after {} s",
                                d.as_secs_f64()
                            ),
                        ))
                    }
                },
            };
            Ok(setup.start(session, None))
        }))
    })
    .context_manager())
}

/// `peer = await connect_command(["prog", "arg"])`: runs a command and talks qtalk over its
/// stdin and stdout (its stderr is this process's). Closing the peer kills the command.
#[pyfunction]
#[pyo3(signature = (argv, *, codec = "json", mux = None, config = None, options = None))]
pub(crate) fn connect_command(
    py: Python<'_>,
    argv: Vec<String>,
    codec: &str,
    mux: Option<Bound<'_, PyAny>>,
    config: Option<PyRef<'_, PyConfig>>,
    options: Option<PyRef<'_, PyOptions>>,
) -> PyResult<Op> {
    let Some((program, args)) = argv.split_first() else {
        return Err(PyValueError::new_err(
            "argv is empty: give the program and its arguments",
        ));
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    let config = config_of(config);
    codec_by_name(codec)?;
    let codec = codec.to_string();
    let mux = mux.map(|m| mux_or_new(py, Some(m))).transpose()?;
    let options = options.map(|o| o.options.clone());
    Ok(Op::deferred("connect_command", move |py| {
        let mut setup = PeerSetup::new(py, &codec, mux.map(|m| m.into_bound(py).into_any()), None)?;
        if let Some(o) = options {
            setup.options = o;
        }
        Ok(Op::spawn("connect_command", async move {
            let (session, child) = qtalk::mux::transport::spawn_command(command, config)?;
            Ok(setup.start(session, Some(child)))
        }))
    })
    .context_manager())
}

/// `peer = await connect_stdio()`: talks qtalk over this process's stdin and stdout (for a
/// program another one spawned). Nothing else may write to stdout meanwhile.
#[pyfunction]
#[pyo3(signature = (*, codec = "json", mux = None, config = None, options = None))]
pub(crate) fn connect_stdio(
    py: Python<'_>,
    codec: &str,
    mux: Option<Bound<'_, PyAny>>,
    config: Option<PyRef<'_, PyConfig>>,
    options: Option<PyRef<'_, PyOptions>>,
) -> PyResult<Op> {
    let config = config_of(config);
    codec_by_name(codec)?;
    let codec = codec.to_string();
    let mux = mux.map(|m| mux_or_new(py, Some(m))).transpose()?;
    let options = options.map(|o| o.options.clone());
    Ok(Op::deferred("connect_stdio", move |py| {
        let mut setup = PeerSetup::new(py, &codec, mux.map(|m| m.into_bound(py).into_any()), None)?;
        if let Some(o) = options {
            setup.options = o;
        }
        Ok(Op::spawn("connect_stdio", async move {
            let session = qtalk::mux::transport::stdio(config);
            Ok(setup.start(session, None))
        }))
    })
    .context_manager())
}
