//! The native part of the `qtalk_rs` Python package: qtalk's Rust core (sessions, calls,
//! handlers, codecs) on a tokio runtime, bridged to asyncio with pyo3-async-runtimes.
//!
//! Every wait and every I/O runs as a Rust future on the runtime's threads without the GIL;
//! results reach the event loop through a job queue it watches (see [`bridge`]), so the
//! runtime's threads never take the GIL. Python handlers run on the event loop captured when a
//! server or peer was started.

mod bridge;
mod call;
mod callback;
mod config;
mod context;
mod convert;
mod endpoint;
mod errors;
mod handler;
mod logbridge;
mod peer;
mod recv;
mod server;

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use qtalk::codec::{Cbor, Codec, Json};

/// The codec named `name` (`"json"` or `"cbor"`).
pub(crate) fn codec_by_name(name: &str) -> PyResult<Arc<dyn Codec>> {
    match name.to_ascii_lowercase().as_str() {
        "json" => Ok(Arc::new(Json)),
        "cbor" => Ok(Arc::new(Cbor)),
        _ => Err(PyValueError::new_err(format!(
            "unknown codec {name:?}: use \"json\" or \"cbor\""
        ))),
    }
}

/// `(cert_pem, key_pem) = self_signed(["localhost"])`: a fresh self-signed certificate and
/// its key as PEM text, for development servers (write them to files for `cert=`/`key=`, and
/// give the certificate to clients as `ca=`).
#[pyfunction]
#[pyo3(signature = (names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()]))]
fn self_signed(names: Vec<String>) -> PyResult<(String, String)> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    qtalk::mux::tls::self_signed_pem(&names).map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(bridge::shutdown, m)?)?;
    m.add_class::<bridge::Op>()?;
    m.add_class::<bridge::Dispatcher>()?;
    m.add_class::<callback::PyCallback>()?;
    m.add_class::<config::PyConfig>()?;
    m.add_class::<config::PyOptions>()?;
    m.add_class::<context::PyConnection>()?;
    m.add_class::<context::PyCallInfo>()?;
    m.add_class::<handler::PyMux>()?;
    m.add_class::<peer::PyPeer>()?;
    m.add_class::<peer::PyCaller>()?;
    m.add_class::<call::PyResponse>()?;
    m.add_class::<call::PyCall>()?;
    m.add_class::<call::PyStream>()?;
    m.add_class::<call::PyResponder>()?;
    m.add_class::<handler::PyHandlerFunc>()?;
    m.add_class::<server::PyServer>()?;
    m.add_function(wrap_pyfunction!(peer::connect, m)?)?;
    m.add_function(wrap_pyfunction!(peer::connect_command, m)?)?;
    m.add_function(wrap_pyfunction!(peer::connect_stdio, m)?)?;
    m.add_function(wrap_pyfunction!(server::start_server, m)?)?;
    m.add_function(wrap_pyfunction!(self_signed, m)?)?;
    m.add_function(wrap_pyfunction!(convert::encode, m)?)?;
    m.add_function(wrap_pyfunction!(convert::decode, m)?)?;
    logbridge::install(m.py());
    Ok(())
}
