//! What a call knows of itself: its metadata and deadline ([`CallContext`]), the connection
//! it came over ([`PyConnection`]), and the server middleware that sees them before the
//! handler runs ([`Guarded`]).

use std::sync::{Arc, Mutex as StdMutex};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use qtalk::rpc::{BoxFuture, Call, CallContext, Handler, Responder};
use tokio::sync::oneshot;

use crate::bridge::{Job, Queue};

/// The connection a call (or a session) came over: `transport`, `remote_addr`,
/// `local_addr`, the TLS peer's certificates, the WebSocket upgrade request, a Unix peer's
/// credentials.
#[pyclass(module = "qtalk_rs._native", name = "Connection", frozen)]
pub(crate) struct PyConnection {
    info: qtalk::mux::ConnectionInfo,
}

impl PyConnection {
    pub(crate) fn new(info: qtalk::mux::ConnectionInfo) -> Self {
        PyConnection { info }
    }
}

#[pymethods]
impl PyConnection {
    /// The transport: `"tcp"`, `"unix"`, `"tls"`, `"websocket"`, `"quic"`, `"stdio"`, ...
    #[getter]
    fn transport(&self) -> &'static str {
        self.info.transport().name()
    }

    /// The peer's address (`"127.0.0.1:50432"`), when the transport has one.
    #[getter]
    fn remote_addr(&self) -> Option<String> {
        self.info.remote_addr().map(|a| a.to_string())
    }

    /// This side's address, when known.
    #[getter]
    fn local_addr(&self) -> Option<String> {
        self.info.local_addr().map(|a| a.to_string())
    }

    /// True over TLS or QUIC.
    #[getter]
    fn secure(&self) -> bool {
        self.info.is_secure()
    }

    /// The certificates the TLS (or QUIC) peer presented, leaf first, in DER; empty without
    /// (a client presents one only when the server asks: `start_server(client_ca=...)`).
    #[getter]
    fn peer_certificates<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.info
            .peer_certificates()
            .iter()
            .map(|c| PyBytes::new(py, c.as_der()))
            .collect()
    }

    /// The TLS peer's own certificate (DER), if it presented one.
    #[getter]
    fn peer_certificate<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.info
            .peer_certificates()
            .first()
            .map(|c| PyBytes::new(py, c.as_der()))
    }

    /// The TLS server name (SNI), when known.
    #[getter]
    fn server_name(&self) -> Option<String> {
        self.info
            .tls()
            .and_then(|t| t.server_name())
            .map(str::to_string)
    }

    /// The WebSocket upgrade request's path (and query), for a WebSocket connection.
    #[getter]
    fn path(&self) -> Option<String> {
        self.info.upgrade_request().map(|r| r.path().to_string())
    }

    /// The WebSocket upgrade request's headers (names lowercase; the last value of a
    /// repeated header), for a WebSocket connection.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(req) = self.info.upgrade_request() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        for (name, value) in req.headers() {
            d.set_item(name.to_ascii_lowercase(), String::from_utf8_lossy(value))?;
        }
        Ok(Some(d))
    }

    /// The value of cookie `name` in the WebSocket upgrade request.
    fn cookie(&self, name: &str) -> Option<String> {
        self.info
            .upgrade_request()
            .and_then(|r| r.cookie(name))
            .map(str::to_string)
    }

    /// The Unix socket peer's `(pid, uid, gid)` (each None where the system does not say).
    #[getter]
    fn peer_credentials(&self) -> Option<(Option<u32>, Option<u32>, Option<u32>)> {
        self.info
            .peer_credentials()
            .map(|c| (c.pid(), c.uid(), c.gid()))
    }

    fn __repr__(&self) -> String {
        format!(
            "<qtalk_rs.Connection {} {}>",
            self.transport(),
            self.remote_addr().unwrap_or_default()
        )
    }
}

/// A call's metadata as a dict.
pub(crate) fn metadata_dict<'py>(
    py: Python<'py>,
    ctx: &CallContext,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in ctx.metadata().iter() {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// Seconds left until the context's deadline (0.0 once passed), or None without one.
pub(crate) fn remaining(ctx: &CallContext) -> Option<f64> {
    ctx.remaining().map(|d| d.as_secs_f64())
}

/// What server middleware sees of a call before its handler runs: `selector`, `metadata`,
/// `remaining` (seconds to the deadline, or None), `connection`.
#[pyclass(module = "qtalk_rs._native", name = "CallInfo", frozen)]
pub(crate) struct PyCallInfo {
    selector: String,
    context: CallContext,
    connection: qtalk::mux::ConnectionInfo,
}

#[pymethods]
impl PyCallInfo {
    /// The selector called (`"/Upper"`).
    #[getter]
    fn selector(&self) -> &str {
        &self.selector
    }

    /// The call's metadata (a new dict each time).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metadata_dict(py, &self.context)
    }

    /// Seconds left until the caller's deadline, or None without one.
    #[getter]
    fn remaining(&self) -> Option<f64> {
        remaining(&self.context)
    }

    /// The connection the call came over.
    #[getter]
    fn connection(&self) -> PyConnection {
        PyConnection::new(self.connection.clone())
    }

    fn __repr__(&self) -> String {
        format!("<qtalk_rs.CallInfo {}>", self.selector)
    }
}

/// The done-callback of the middleware's task: `None` to go on, or the error text.
#[pyclass(module = "qtalk_rs._native")]
pub(crate) struct Verdict {
    tx: StdMutex<Option<oneshot::Sender<Result<(), String>>>>,
}

#[pymethods]
impl Verdict {
    fn __call__(&self, py: Python<'_>, task: Bound<'_, PyAny>) -> PyResult<()> {
        let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let refused: Option<String> = crate::handler::helpers(py)?
            .call_method1("verdict", (task,))?
            .extract()?;
        let _ = tx.send(match refused {
            None => Ok(()),
            Some(text) => Err(text),
        });
        Ok(())
    }
}

/// Runs the Python server middleware (`start_server(middleware=[...])`) before `inner`: each
/// function gets the call's [`PyCallInfo`]; one that raises refuses the call with the
/// exception's text (the handler never runs).
pub(crate) struct Guarded<H> {
    pub(crate) hooks: Arc<Py<PyAny>>,
    pub(crate) inner: Arc<H>,
    pub(crate) queue: Arc<Queue>,
}

impl<H: Handler> Handler for Guarded<H> {
    fn respond(&self, r: Responder, call: Call) -> BoxFuture<()> {
        let info = PyCallInfo {
            selector: call.selector().to_string(),
            context: call.context().clone(),
            connection: call.connection().clone(),
        };
        let (tx, rx) = oneshot::channel();
        let hooks = self.hooks.clone();
        let job: Job = Box::new(move |py| {
            let started = (|| -> PyResult<()> {
                let verdict = Verdict {
                    tx: StdMutex::new(Some(tx)),
                };
                crate::handler::helpers(py)?.call_method1(
                    "guard",
                    (hooks.bind(py), Py::new(py, info)?, Py::new(py, verdict)?),
                )?;
                Ok(())
            })();
            // On an error the sender went with the verdict: the call is refused below.
            if let Err(e) = started {
                e.print(py);
            }
        });
        let pushed = self.queue.push(job).is_ok();
        let inner = self.inner.clone();
        Box::pin(async move {
            let verdict = if pushed {
                rx.await
                    .unwrap_or_else(|_| Err("the middleware did not run".into()))
            } else {
                Err("the event loop serving this call is closed".into())
            };
            match verdict {
                Ok(()) => inner.respond(r, call).await,
                Err(text) => {
                    let _ = r.error(text).await;
                }
            }
        })
    }
}
