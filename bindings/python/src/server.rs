//! Serving a mux on a listener ([`PyServer`]).

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use qtalk::rpc::Server;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bridge::{running_queue, Op};
use crate::codec_by_name;
use crate::config::{config_of, options_of, seconds, PyConfig, PyOptions};
use crate::endpoint::Endpoint;
use crate::errors::Failure;
use crate::handler::{LoopBound, PyMux};

/// A running server: `address`, `close()`, `await wait_closed()`, `await serve_forever()`,
/// `async with`. It keeps serving until closed, even when no reference to it is left (as an
/// `asyncio.Server` does).
#[pyclass(module = "qtalk_rs._native", name = "Server", frozen)]
pub(crate) struct PyServer {
    server: Server,
    mux: Py<PyMux>,
    address: String,
    task: StdMutex<Option<JoinHandle<()>>>,
    stopped: watch::Receiver<bool>,
}

#[pymethods]
impl PyServer {
    /// The URL to connect to, e.g. `tcp://127.0.0.1:40123` (the port picked when bound to
    /// port 0).
    #[getter]
    fn address(&self) -> &str {
        &self.address
    }

    /// The mux it serves.
    #[getter]
    fn mux(&self, py: Python<'_>) -> Py<PyMux> {
        self.mux.clone_ref(py)
    }

    /// True once the server stopped accepting.
    #[getter]
    fn closed(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Stops accepting sessions and closes the ones being served.
    fn close(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        let server = self.server.clone();
        crate::bridge::runtime().spawn(async move {
            server.shutdown(Duration::ZERO).await;
        });
    }

    /// Stops accepting, waits up to `grace` seconds for calls in flight, then closes the
    /// sessions.
    #[pyo3(signature = (grace = 1.0))]
    fn shutdown(&self, grace: f64) -> PyResult<Op> {
        let grace = seconds("grace", grace)?;
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        let server = self.server.clone();
        Ok(Op::spawn("shutdown", async move {
            server.shutdown(grace).await;
            Ok::<_, Failure>(())
        }))
    }

    /// Waits until the server stopped accepting.
    fn wait_closed(&self) -> Op {
        let mut stopped = self.stopped.clone();
        Op::spawn("wait_closed", async move {
            let _ = stopped.wait_for(|s| *s).await;
            Ok::<_, Failure>(())
        })
    }

    /// Serves until closed or cancelled (cancelling closes the server).
    fn serve_forever(slf: Bound<'_, Self>) -> Op {
        let this = slf.get();
        let mut stopped = this.stopped.clone();
        let server = this.server.clone();
        let owner: Py<PyServer> = slf.clone().unbind();
        Op::spawn("serve_forever", async move {
            struct CloseOnDrop(Option<Py<PyServer>>);
            impl Drop for CloseOnDrop {
                fn drop(&mut self) {
                    if let Some(s) = self.0.take() {
                        s.get().close();
                    }
                }
            }
            let mut guard = CloseOnDrop(Some(owner));
            let _ = stopped.wait_for(|s| *s).await;
            guard.0 = None;
            drop(server);
            Ok::<_, Failure>(())
        })
    }

    fn __aenter__(slf: Py<Self>) -> Op {
        Op::ready("__aenter__", Ok(slf.into_any()))
    }

    fn __aexit__(
        &self,
        _exc_type: Bound<'_, PyAny>,
        _exc: Bound<'_, PyAny>,
        _tb: Bound<'_, PyAny>,
    ) -> Op {
        self.close();
        let mut stopped = self.stopped.clone();
        Op::spawn("__aexit__", async move {
            let _ = stopped.wait_for(|s| *s).await;
            Ok::<_, Failure>(false)
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<qtalk_rs.Server {} closed={}>",
            self.address,
            self.closed()
        )
    }
}

/// `server = await start_server("tcp://127.0.0.1:0", mux)`: binds and serves `mux` in the
/// background; handlers run on the event loop running when it is awaited.
/// `tls://`, `wss://` and `quic://` need `cert=` and `key=` (PEM files).
#[pyfunction]
#[pyo3(signature = (url, mux, *, codec = "json", cert = None, key = None, client_ca = None,
    middleware = None, config = None, options = None, max_sessions = None, max_calls = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_server(
    url: &str,
    mux: Bound<'_, PyAny>,
    codec: &str,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
    client_ca: Option<std::path::PathBuf>,
    middleware: Option<Vec<Bound<'_, PyAny>>>,
    config: Option<PyRef<'_, PyConfig>>,
    options: Option<PyRef<'_, PyOptions>>,
    max_sessions: Option<usize>,
    max_calls: Option<usize>,
) -> PyResult<Op> {
    let endpoint = Endpoint::parse(url)?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("give both cert= and key=")),
    };
    if identity.is_some() && !endpoint.is_secure() {
        return Err(PyValueError::new_err(
            "cert= and key= apply to tls://, wss:// and quic:// only",
        ));
    }
    if identity.is_none() && endpoint.is_secure() {
        return Err(PyValueError::new_err(format!(
            "{url}: a tls://, wss:// or quic:// server needs cert= and key= (PEM files; \
             qtalk_rs.self_signed() makes a development pair)"
        )));
    }
    if client_ca.is_some() && identity.is_none() {
        return Err(PyValueError::new_err(
            "client_ca= (requiring client certificates) needs a tls://, wss:// or quic:// \
             server with cert= and key=",
        ));
    }
    let mut hooks = Vec::new();
    for h in middleware.into_iter().flatten() {
        if !h.is_callable() {
            return Err(PyTypeError::new_err(
                "middleware= takes functions hook(call_info), sync or async",
            ));
        }
        hooks.push(h);
    }
    let hooks = (!hooks.is_empty())
        .then(|| -> PyResult<_> {
            let py = mux.py();
            Ok(Arc::new(
                pyo3::types::PyTuple::new(py, hooks)?.into_any().unbind(),
            ))
        })
        .transpose()?;
    let codec = codec_by_name(codec)?;
    let mux_obj: Py<PyMux> = mux
        .cast::<PyMux>()
        .map_err(|_| PyTypeError::new_err("mux must be a qtalk_rs.RespondMux"))?
        .clone()
        .unbind();
    let config = config_of(config);
    let options = crate::config::with_limits(options_of(options), max_sessions, max_calls)?;
    Ok(Op::deferred("start_server", move |py| {
        let (_, queue) = running_queue(py)?;
        crate::logbridge::refresh_level(py);
        let mux = mux_obj.get().mux.clone();
        Ok(Op::spawn("start_server", async move {
            let (listener, address) = endpoint
                .bind(identity.as_ref(), client_ca.as_ref(), config)
                .await?;
            let bound = LoopBound {
                handler: mux,
                queue: queue.clone(),
            };
            let handler: Arc<dyn qtalk::rpc::Handler> = match hooks {
                None => Arc::new(bound),
                Some(hooks) => Arc::new(crate::context::Guarded {
                    hooks,
                    inner: Arc::new(bound),
                    queue,
                }),
            };
            let server = Server::with_options(handler, codec, options);
            let (stop_tx, stopped) = watch::channel(false);
            let serving = server.clone();
            struct Stopped(watch::Sender<bool>);
            impl Drop for Stopped {
                fn drop(&mut self) {
                    self.0.send_replace(true);
                }
            }
            // Made before the task and moved into it: a task aborted before its first poll
            // (`close()` at once) still drops it, so the server reads as closed.
            let stopped_guard = Stopped(stop_tx);
            let task = tokio::spawn(async move {
                let _stopped = stopped_guard;
                if let Err(e) = serving.serve(listener).await {
                    tracing::error!("server stopped: {e}");
                }
            });
            Ok(PyServer {
                server,
                mux: mux_obj,
                address,
                task: StdMutex::new(Some(task)),
                stopped,
            })
        }))
    })
    .context_manager())
}
