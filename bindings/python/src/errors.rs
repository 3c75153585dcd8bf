//! Failures of the module's operations, and the exceptions of `qtalk_rs._errors` they become.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// Why an operation failed; made a Python exception once the GIL is held.
pub(crate) enum Failure {
    Py(PyErr),
    Rpc(qtalk::rpc::Error),
    /// An exception of `qtalk_rs._errors` by class name, with its message.
    Kind(Kind, String),
}

/// The exception classes of `qtalk_rs._errors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Qtalk,
    Remote,
    SessionClosed,
    Timeout,
    Refused,
    FrameTooLarge,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Qtalk => "QtalkError",
            Kind::Remote => "RemoteError",
            Kind::SessionClosed => "SessionClosedError",
            Kind::Timeout => "TimeoutError",
            Kind::Refused => "RefusedError",
            Kind::FrameTooLarge => "FrameTooLargeError",
        }
    }
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Failure::Py(e)
    }
}

impl From<qtalk::rpc::Error> for Failure {
    fn from(e: qtalk::rpc::Error) -> Self {
        Failure::Rpc(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        match mux_error_in(&e) {
            Some(m) => Failure::Kind(mux_kind(m), m.to_string()),
            None if e.kind() == std::io::ErrorKind::TimedOut => {
                Failure::Kind(Kind::Timeout, e.to_string())
            }
            None => Failure::Py(e.into()),
        }
    }
}

/// A `QtalkError` with `message`.
pub(crate) fn qtalk_error(message: impl Into<String>) -> Failure {
    Failure::Kind(Kind::Qtalk, message.into())
}

/// The session error a channel's `io::Error` carries, if any.
fn mux_error_in(e: &std::io::Error) -> Option<&qtalk::mux::Error> {
    e.get_ref()?.downcast_ref::<qtalk::mux::Error>()
}

fn mux_kind(e: &qtalk::mux::Error) -> Kind {
    match e {
        qtalk::mux::Error::OpenRefused => Kind::Refused,
        qtalk::mux::Error::Timeout => Kind::Timeout,
        _ => Kind::SessionClosed,
    }
}

/// The exception kind of an rpc error.
pub(crate) fn rpc_kind(e: &qtalk::rpc::Error) -> Kind {
    use qtalk::rpc::Error as E;
    match e {
        E::Remote(_) => Kind::Remote,
        E::Session(m) => mux_kind(m),
        E::Io(io) => match mux_error_in(io) {
            Some(m) => mux_kind(m),
            None => match io.kind() {
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::NotConnected
                | std::io::ErrorKind::BrokenPipe => Kind::SessionClosed,
                std::io::ErrorKind::TimedOut => Kind::Timeout,
                _ => Kind::Qtalk,
            },
        },
        E::Refused => Kind::Refused,
        E::FrameTooLarge { .. } => Kind::FrameTooLarge,
        E::Timeout => Kind::Timeout,
        _ => Kind::Qtalk,
    }
}

/// An instance of the exception class `kind` with `message`.
pub(crate) fn exception(py: Python<'_>, kind: Kind, message: &str) -> PyErr {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let made = MODULE
        .get_or_try_init(py, || py.import("qtalk_rs._errors").map(Bound::unbind))
        .and_then(|m| m.bind(py).getattr(kind.class_name()))
        .and_then(|c| c.call1((message,)));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

impl Failure {
    /// The Python exception: `RemoteError` for the responder's error (its text in `.text`;
    /// `str()` is `remote: <text>` as in Go), a subclass of `QtalkError` for each other cause.
    pub(crate) fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self {
            Failure::Py(e) => e,
            Failure::Rpc(qtalk::rpc::Error::Remote(message)) => {
                exception(py, Kind::Remote, &message)
            }
            Failure::Rpc(e) => exception(py, rpc_kind(&e), &e.to_string()),
            Failure::Kind(kind, message) => exception(py, kind, &message),
        }
    }
}
