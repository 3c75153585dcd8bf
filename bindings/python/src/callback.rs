//! Callbacks passed as values (`{"$fnptr": "<id>"}`, the reference's `exp.Ptr`).
//!
//! A function sent as (part of) a call's arguments or reply is registered on the session it
//! goes over, under a fresh 128-bit id, and travels as `{"$fnptr": "<id>"}`; only that
//! session's peer can call it, until `unregister()` or the end of the session. Such a map
//! received becomes a [`PyCallback`]: `await cb(*args)` calls it back over the same session.

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use qtalk::rpc::{Callback, Caller};
use qtalk::Value;

use crate::bridge::{running_queue, Op};
use crate::handler::PyHandler;
use crate::peer::{call_op, CallOptions};

/// Registers the function `obj` on the session of `caller`; the value to send for it.
pub(crate) fn register(obj: &Bound<'_, PyAny>, caller: &Caller) -> PyResult<Value> {
    let (_, queue) = running_queue(obj.py())?;
    let handler = PyHandler::new(obj.py(), obj, Some(queue))?;
    let cb = Callback::register(caller, handler);
    Ok(fnptr_value(&cb.id))
}

fn fnptr_value(id: &str) -> Value {
    Value::Map(vec![(Value::Text("$fnptr".into()), Value::Text(id.into()))])
}

/// A function of the peer, received as a value: `await cb(*args)` calls it (over the session it
/// came on) and returns its reply. Made by `peer.callback(fn)` too, for a function of this side
/// to send many times and unregister when done.
#[pyclass(module = "qtalk_rs._native", name = "Callback", frozen)]
pub(crate) struct PyCallback {
    id: String,
    caller: Caller,
    /// Registered by this side (`peer.callback(fn)`), so `unregister()` applies.
    local: bool,
}

impl PyCallback {
    pub(crate) fn new(id: String, caller: Caller) -> Self {
        PyCallback {
            id,
            caller,
            local: false,
        }
    }

    pub(crate) fn local(obj: &Bound<'_, PyAny>, caller: &Caller) -> PyResult<Self> {
        let (_, queue) = running_queue(obj.py())?;
        let handler = PyHandler::new(obj.py(), obj, Some(queue))?;
        let cb = Callback::register(caller, handler);
        Ok(PyCallback {
            id: cb.id,
            caller: caller.clone(),
            local: true,
        })
    }

    pub(crate) fn as_value(&self) -> Value {
        fnptr_value(&self.id)
    }
}

#[pymethods]
impl PyCallback {
    /// The selector the function answers at on its side.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// `await cb(*args)`: calls the function with the positional arguments; its reply.
    #[pyo3(signature = (*args, timeout = None, metadata = None))]
    fn __call__(
        &self,
        args: &Bound<'_, PyTuple>,
        timeout: Option<f64>,
        metadata: Option<std::collections::HashMap<String, String>>,
    ) -> PyResult<Op> {
        call_op(
            &self.caller,
            self.id.clone(),
            args.as_any(),
            true,
            CallOptions::new(timeout)?.with_metadata(metadata.map(|m| m.into_iter().collect())),
        )
    }

    /// Removes a function registered with `peer.callback(fn)`; False when it was not (or no
    /// more) registered.
    fn unregister(&self) -> bool {
        self.local
            && Callback {
                id: self.id.clone(),
            }
            .unregister(&self.caller)
    }

    fn __repr__(&self) -> String {
        format!("<qtalk_rs.Callback {}>", self.id)
    }
}
