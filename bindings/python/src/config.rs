//! `Config` (the session layer's limits) and `Options` (the rpc layer's), as validated keyword
//! arguments.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Seconds as a `Duration`; `name` says which argument was wrong.
pub(crate) fn seconds(name: &str, secs: f64) -> PyResult<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be a non-negative number of seconds, got {secs}"
        )));
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| PyValueError::new_err(format!("{name} is too large: {secs}")))
}

/// A timeout in seconds: `None` for none; otherwise positive.
pub(crate) fn timeout(secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s > 0.0 => seconds("timeout", s).map(Some),
        Some(s) => Err(PyValueError::new_err(format!(
            "timeout must be a positive number of seconds (or None), got {s}"
        ))),
    }
}

/// The session layer's limits and timeouts, checked when made:
/// `Config(window=4 << 20, max_channels=1024, ...)`. Sizes in bytes, times in seconds;
/// anything not given keeps the Rust default (see the repository's limits table).
#[pyclass(module = "qtalk_rs._native", name = "Config", frozen)]
#[derive(Clone)]
pub(crate) struct PyConfig {
    pub(crate) config: qtalk::mux::Config,
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (*, window = None, max_packet = None, max_channels = None,
        accept_backlog = None, open_queue = None, memory_budget = None, send_buffer = None,
        open_timeout = None, accept_timeout = None, close_timeout = None,
        handshake_timeout = None, max_handshakes = None, keep_alive = None, idle_timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        window: Option<u32>,
        max_packet: Option<u32>,
        max_channels: Option<usize>,
        accept_backlog: Option<usize>,
        open_queue: Option<usize>,
        memory_budget: Option<usize>,
        send_buffer: Option<usize>,
        open_timeout: Option<f64>,
        accept_timeout: Option<f64>,
        close_timeout: Option<f64>,
        handshake_timeout: Option<f64>,
        max_handshakes: Option<usize>,
        keep_alive: Option<f64>,
        idle_timeout: Option<f64>,
    ) -> PyResult<Self> {
        let mut b = qtalk::mux::Config::builder();
        if let Some(v) = window {
            b = b.window(v);
        }
        if let Some(v) = max_packet {
            b = b.max_packet(v);
        }
        if let Some(v) = max_channels {
            b = b.max_channels(v);
        }
        if let Some(v) = accept_backlog {
            b = b.accept_backlog(v);
        }
        if let Some(v) = open_queue {
            b = b.open_queue(v);
        }
        if let Some(v) = memory_budget {
            b = b.memory_budget(v);
        }
        if let Some(v) = send_buffer {
            b = b.send_buffer(v);
        }
        if let Some(v) = open_timeout {
            b = b.open_timeout(seconds("open_timeout", v)?);
        }
        if let Some(v) = accept_timeout {
            b = b.accept_timeout(seconds("accept_timeout", v)?);
        }
        if let Some(v) = close_timeout {
            b = b.close_timeout(seconds("close_timeout", v)?);
        }
        if let Some(v) = handshake_timeout {
            b = b.handshake_timeout(seconds("handshake_timeout", v)?);
        }
        if let Some(v) = max_handshakes {
            b = b.max_handshakes(v);
        }
        if let Some(v) = keep_alive {
            b = b.keep_alive(seconds("keep_alive", v)?);
        }
        if let Some(v) = idle_timeout {
            b = b.idle_timeout(seconds("idle_timeout", v)?);
        }
        let config = b
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyConfig { config })
    }

    /// The receive window per channel, in bytes.
    #[getter]
    fn window(&self) -> u32 {
        self.config.window_size()
    }

    /// The largest DATA payload accepted, in bytes.
    #[getter]
    fn max_packet(&self) -> u32 {
        self.config.max_packet_size()
    }

    /// Channels open at once.
    #[getter]
    fn max_channels(&self) -> usize {
        self.config.proto().max_channels()
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.config)
    }
}

/// The rpc layer's limits: `Options(max_frame=1 << 20, header_timeout=5.0, ...)`, checked
/// when made. Sizes in bytes, times in seconds.
#[pyclass(module = "qtalk_rs._native", name = "Options", frozen)]
#[derive(Clone)]
pub(crate) struct PyOptions {
    pub(crate) options: qtalk::rpc::Options,
}

#[pymethods]
impl PyOptions {
    #[new]
    #[pyo3(signature = (*, max_frame = None, header_timeout = None, args_grace = None,
        spare_channels = None, spare_max_age = None, max_metadata = None, max_sessions = None,
        max_calls = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_frame: Option<u32>,
        header_timeout: Option<f64>,
        args_grace: Option<f64>,
        spare_channels: Option<usize>,
        spare_max_age: Option<f64>,
        max_metadata: Option<usize>,
        max_sessions: Option<usize>,
        max_calls: Option<usize>,
    ) -> PyResult<Self> {
        let mut b = qtalk::rpc::Options::builder();
        if let Some(v) = max_frame {
            b = b.max_frame(v);
        }
        if let Some(v) = header_timeout {
            b = b.header_timeout(seconds("header_timeout", v)?);
        }
        if let Some(v) = args_grace {
            b = b.args_grace(seconds("args_grace", v)?);
        }
        if let Some(v) = spare_channels {
            b = b.spare_channels(v);
        }
        if let Some(v) = spare_max_age {
            b = b.spare_max_age(seconds("spare_max_age", v)?);
        }
        if let Some(v) = max_metadata {
            b = b.max_metadata(v);
        }
        if let Some(v) = max_sessions {
            b = b.max_sessions(v);
        }
        if let Some(v) = max_calls {
            b = b.max_calls(v);
        }
        let options = b
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(PyOptions { options })
    }

    /// The largest rpc frame accepted, in bytes.
    #[getter]
    fn max_frame(&self) -> u32 {
        self.options.max_frame()
    }

    /// How long a responder waits for a call header, in seconds.
    #[getter]
    fn header_timeout(&self) -> f64 {
        self.options.header_timeout().as_secs_f64()
    }

    /// The largest metadata a call may carry, in bytes.
    #[getter]
    fn max_metadata(&self) -> usize {
        self.options.max_metadata()
    }

    /// Sessions a server serves at once.
    #[getter]
    fn max_sessions(&self) -> usize {
        self.options.max_sessions()
    }

    /// Calls a server runs at once.
    #[getter]
    fn max_calls(&self) -> usize {
        self.options.max_calls()
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.options)
    }
}

/// `options` with the server limits given as keyword arguments of `start_server`.
pub(crate) fn with_limits(
    options: qtalk::rpc::Options,
    max_sessions: Option<usize>,
    max_calls: Option<usize>,
) -> PyResult<qtalk::rpc::Options> {
    if max_sessions.is_none() && max_calls.is_none() {
        return Ok(options);
    }
    let mut b = options.to_builder();
    if let Some(v) = max_sessions {
        b = b.max_sessions(v);
    }
    if let Some(v) = max_calls {
        b = b.max_calls(v);
    }
    b.build().map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The config given, or the default.
pub(crate) fn config_of(c: Option<PyRef<'_, PyConfig>>) -> qtalk::mux::Config {
    c.map(|c| c.config.clone()).unwrap_or_default()
}

/// The options given, or the default.
pub(crate) fn options_of(o: Option<PyRef<'_, PyOptions>>) -> qtalk::rpc::Options {
    o.map(|o| o.options.clone()).unwrap_or_default()
}
