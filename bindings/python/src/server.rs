//! Serving a mux on a listener ([`PyServer`]).

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use crate::bridge::spawn_py;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use qtalk::rpc::Server;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::codec_by_name;
use crate::endpoint::Endpoint;
use crate::handler::{LoopBound, PyMux};

/// A running server: `address`, `close()`, `await wait_closed()`, `await serve_forever()`,
/// `async with`. It keeps serving until closed, even when no reference to it is left (as an
/// `asyncio.Server` does).
#[pyclass(module = "qtalk_rs", name = "Server", frozen)]
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
    fn shutdown<'py>(&self, py: Python<'py>, grace: f64) -> PyResult<Bound<'py, PyAny>> {
        let grace = Duration::try_from_secs_f64(grace)
            .map_err(|_| PyTypeError::new_err("grace must be a non-negative number of seconds"))?;
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        let server = self.server.clone();
        spawn_py(py, async move {
            server.shutdown(grace).await;
            Ok(())
        })
    }

    /// Waits until the server stopped accepting.
    fn wait_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut stopped = self.stopped.clone();
        spawn_py(py, async move {
            let _ = stopped.wait_for(|s| *s).await;
            Ok(())
        })
    }

    /// Serves until closed or cancelled (cancelling closes the server).
    fn serve_forever<'py>(slf: Bound<'py, Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let mut stopped = this.stopped.clone();
        let server = this.server.clone();
        let owner: Py<PyServer> = slf.clone().unbind();
        spawn_py(py, async move {
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
            Ok(())
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
        let mut stopped = self.stopped.clone();
        spawn_py(py, async move {
            let _ = stopped.wait_for(|s| *s).await;
            Ok(false)
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

/// `server = await start_server("tcp://127.0.0.1:0", mux, codec="json")`: binds and serves
/// `mux` in the background; handlers run on the running event loop.
/// `tls://`, `wss://` and `quic://` need `cert=` and `key=` (PEM files).
#[pyfunction]
#[pyo3(signature = (url, mux, codec = "json", *, cert = None, key = None))]
pub(crate) fn start_server<'py>(
    py: Python<'py>,
    url: &str,
    mux: Bound<'py, PyAny>,
    codec: &str,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let endpoint = Endpoint::parse(url)?;
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "give both cert= and key=",
            ))
        }
    };
    if identity.is_some() && !endpoint.is_secure() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "cert= and key= apply to tls://, wss:// and quic:// only",
        ));
    }
    if identity.is_none() && endpoint.is_secure() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{url}: a tls://, wss:// or quic:// server needs cert= and key= (PEM files; \
             qtalk_rs.self_signed() makes a development pair)"
        )));
    }
    let codec = codec_by_name(codec)?;
    let mux_obj: Py<PyMux> = mux
        .cast::<PyMux>()
        .map_err(|_| PyTypeError::new_err("mux must be a qtalk_rs.RespondMux"))?
        .clone()
        .unbind();
    let mux = mux_obj.get().mux.clone();
    let event_loop = crate::bridge::running_loop(py)?;
    spawn_py(py, async move {
        let (listener, address) = endpoint.bind(identity.as_ref()).await?;
        let server = Server::new(LoopBound { mux, event_loop }, codec);
        let (stop_tx, stopped) = watch::channel(false);
        let serving = server.clone();
        let task = tokio::spawn(async move {
            struct Stopped(watch::Sender<bool>);
            impl Drop for Stopped {
                fn drop(&mut self) {
                    self.0.send_replace(true);
                }
            }
            let _stopped = Stopped(stop_tx);
            if let Err(e) = serving.serve(listener).await {
                eprintln!("qtalk_rs: server stopped: {e}");
            }
        });
        Ok(PyServer {
            server,
            mux: mux_obj,
            address,
            task: StdMutex::new(Some(task)),
            stopped,
        })
    })
}
