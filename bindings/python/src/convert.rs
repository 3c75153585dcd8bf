//! Python objects to and from [`qtalk::Value`].
//!
//! To the wire: `None`, `bool`, `int` (within -2**127 .. 2**127-1; the codecs then refuse
//! what they cannot carry), `float`, `str`, `bytes`/`bytearray`/`memoryview`, `list`/`tuple`
//! and `dict`. From the wire: `None`, `bool`, `int`, `float`, `str`, `bytes`, `list`, `dict`
//! (array keys become tuples; a map as a key is refused).
//!
//! With a session at hand ([`Conv::session`]), functions travel as callbacks: a callable sent is
//! registered on the session and goes as `{"$fnptr": "<id>"}`, and such a map received becomes a
//! [`Callback`](crate::callback::PyCallback) that calls back over the session.

use bytes::BytesMut;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use qtalk::rpc::Caller;
use qtalk::Value;

use crate::callback::PyCallback;

/// How values convert: plain, or with the session that callbacks travel over.
#[derive(Clone, Default)]
pub(crate) struct Conv {
    caller: Option<Caller>,
}

impl Conv {
    /// Plain values only (a function is refused; `{"$fnptr"}` stays a dict).
    pub(crate) fn plain() -> Conv {
        Conv { caller: None }
    }

    /// Values of the session of `caller`: functions travel as callbacks.
    pub(crate) fn session(caller: &Caller) -> Conv {
        Conv {
            caller: Some(caller.clone()),
        }
    }

    /// `obj` as a value to send.
    pub(crate) fn to_value(&self, obj: &Bound<'_, PyAny>) -> PyResult<Value> {
        to_value_at(obj, 0, self)
    }

    /// `value` as a Python object.
    pub(crate) fn to_py<'py>(&self, py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
        from_value_in(py, value, self)
    }
}

/// Deepest nesting converted (deeper is refused, so a self-containing list cannot recurse
/// forever).
pub(crate) const MAX_DEPTH: usize = 128;

/// A value on its way to Python (converted once the GIL is held).
pub(crate) struct PyValue(pub Value, pub Conv);

impl<'py> IntoPyObject<'py> for PyValue {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        self.1.to_py(py, &self.0)
    }
}

/// `obj` as a plain value to send.
pub(crate) fn to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    to_value_at(obj, 0, &Conv::plain())
}

fn to_value_at(obj: &Bound<'_, PyAny>, depth: usize, conv: &Conv) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "value nested more than {MAX_DEPTH} levels deep (a list or dict containing itself?)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i128>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Err(PyValueError::new_err(
                "integer out of range: qtalk values carry integers of at most 128 bits",
            )),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if obj.is_instance_of::<PyString>() {
        return Ok(Value::Text(obj.extract::<String>()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Bytes(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Bytes(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let b = obj.call_method0("tobytes")?;
        return Ok(Value::Bytes(b.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(to_value_at(&item, depth + 1, conv)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(tuple.len());
        for item in tuple.iter() {
            out.push(to_value_at(&item, depth + 1, conv)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut out = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            out.push((
                to_value_at(&k, depth + 1, conv)?,
                to_value_at(&v, depth + 1, conv)?,
            ));
        }
        return Ok(Value::Map(out));
    }
    if let Ok(cb) = obj.cast::<PyCallback>() {
        return Ok(cb.get().as_value());
    }
    if obj.is_callable() {
        return match &conv.caller {
            Some(caller) => crate::callback::register(obj, caller),
            None => Err(PyTypeError::new_err(
                "a function can only be sent as a call's argument or reply (a callback)",
            )),
        };
    }
    let kind = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(PyTypeError::new_err(format!(
        "cannot send a value of type {kind}: qtalk values are None, bool, int, float, str, \
         bytes, list, tuple and dict"
    )))
}

/// `value` as a plain Python object.
pub(crate) fn from_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    from_value_in(py, value, &Conv::plain())
}

/// The callback id of `{"$fnptr": "<id>"}`.
fn fnptr(entries: &[(Value, Value)]) -> Option<&str> {
    match entries {
        [(Value::Text(k), Value::Text(id))] if k == "$fnptr" => Some(id),
        _ => None,
    }
}

fn from_value_in<'py>(py: Python<'py>, value: &Value, conv: &Conv) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Bytes(b) => PyBytes::new(py, b).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_value_in(py, item, conv)?)?;
            }
            list.into_any()
        }
        Value::Map(entries) => {
            if let (Some(id), Some(caller)) = (fnptr(entries), &conv.caller) {
                return Ok(
                    Bound::new(py, PyCallback::new(id.to_string(), caller.clone()))?.into_any(),
                );
            }
            let dict = PyDict::new(py);
            for (k, v) in entries {
                dict.set_item(key_from_value(py, k)?, from_value_in(py, v, conv)?)?;
            }
            dict.into_any()
        }
        // `Value` is not exhaustive across versions of qtalk; say so rather than guess.
        #[allow(unreachable_patterns)]
        _ => return Err(PyTypeError::new_err("unsupported qtalk value")),
    })
}

/// A map key as a hashable Python object: arrays become tuples.
fn key_from_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    match value {
        Value::Array(items) => {
            let keys = items
                .iter()
                .map(|k| key_from_value(py, k))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyTuple::new(py, keys)?.into_any())
        }
        Value::Map(_) => Err(PyTypeError::new_err(
            "received a map whose key is a map, which Python cannot hold in a dict",
        )),
        other => from_value(py, other),
    }
}

/// Encodes `value` with `codec` (`"json"` or `"cbor"`), as qtalk sends it (the bytes of one
/// rpc frame's body, without the length prefix).
#[pyfunction]
#[pyo3(signature = (value, codec = "json"))]
pub(crate) fn encode<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    codec: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let codec = crate::codec_by_name(codec)?;
    let value = to_value(value)?;
    let mut buf = BytesMut::new();
    qtalk::codec::encode(&*codec, &value, &mut buf)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &buf))
}

/// Decodes one value encoded with `codec` (`"json"` or `"cbor"`).
#[pyfunction]
#[pyo3(signature = (data, codec = "json"))]
pub(crate) fn decode<'py>(
    py: Python<'py>,
    data: &[u8],
    codec: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let codec = crate::codec_by_name(codec)?;
    let value: Value =
        qtalk::codec::decode(&*codec, data).map_err(|e| PyValueError::new_err(e.to_string()))?;
    from_value(py, &value)
}
