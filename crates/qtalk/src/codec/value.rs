//! [`Value`], a dynamic value both codecs round-trip, and [`Binary`], bytes as Go's `[]byte`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};

use super::json::{format_f64, non_finite_name, push_string};

/// Any value a peer may send: the Rust counterpart of Go's `any` (`interface{}`).
///
/// Decoding keeps more than Go does: integers stay [`Value::Int`] (Go's `any` gets `float64`
/// from JSON and `uint64`/`int64` from CBOR), map entries stay in wire order with keys of any
/// kind (CBOR allows non-text keys), and CBOR byte strings stay [`Value::Bytes`]. JSON numbers
/// with a fraction or exponent, or beyond the 64-bit range, become [`Value::Float`]. Base64
/// text in JSON stays [`Value::Text`]: JSON has no byte strings, so it cannot be told apart.
///
/// Encoding: `Int` as the smallest fitting integer, `Float` as `f64`, `Bytes` with
/// `serialize_bytes` (CBOR byte string, base64 text in [`super::Json`]), `Map` as a map in
/// its own order (the JSON codec then sorts the keys, as Go does; keys must be `Text` for
/// human-readable formats), `Null` as none.
///
/// `Display` prints indented JSON like Go's `json.MarshalIndent(v, "", "  ")`, bytes as base64;
/// as it cannot fail, NaN and infinities print as `NaN`, `+Inf`, `-Inf` and non-text keys as
/// their compact JSON text.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    /// JSON `null`, CBOR `null` or `undefined`.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer; holds every CBOR integer (-2^64 ..= 2^64-1) and then some.
    Int(i128),
    /// A floating-point number (CBOR half and single precision are widened).
    Float(f64),
    /// A text string.
    Text(String),
    /// A byte string.
    Bytes(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map, entries in wire (or insertion) order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The boolean, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is an `Int` that fits an `i64`, or a `Float` holding an integer
    /// that does (so numbers Go sent through `float64` still read as integers).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            Value::Float(f) if f.fract() == 0.0 && *f >= -(2f64.powi(63)) && *f < 2f64.powi(63) => {
                Some(*f as i64)
            }
            _ => None,
        }
    }

    /// The integer, if this is an `Int` that fits a `u64`, or a `Float` holding one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(64) => {
                Some(*f as u64)
            }
            _ => None,
        }
    }

    /// The number as `f64`, if this is a `Float` or an `Int` (possibly rounded).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is a `Text`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is `Bytes`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an `Array`.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The entries, if this is a `Map`.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under text key `key`, if this is a `Map` that has it (the first such entry).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Int(v.into())
            }
        }
    )*};
}
value_from_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(v.into())
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}

impl From<Binary> for Value {
    fn from(v: Binary) -> Self {
        Value::Bytes(v.0)
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}

impl From<Vec<(Value, Value)>> for Value {
    fn from(v: Vec<(Value, Value)>) -> Self {
        Value::Map(v)
    }
}

impl<K: Into<Value>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(v: BTreeMap<K, V>) -> Self {
        Value::Map(v.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl From<()> for Value {
    fn from(_: ()) -> Self {
        Value::Null
    }
}

impl<T: Into<Value>> FromIterator<T> for Value {
    /// Collects into an `Array`.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Value::Array(iter.into_iter().map(Into::into).collect())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_none(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    serializer.serialize_i64(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    serializer.serialize_u64(v)
                } else {
                    serializer.serialize_i128(*i)
                }
            }
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Text(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = serializer.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                if serializer.is_human_readable()
                    && m.iter().any(|(k, _)| !matches!(k, Value::Text(_)))
                {
                    return Err(ser::Error::custom(
                        "map with a non-text key cannot be encoded in a human-readable format",
                    ));
                }
                let mut map = serializer.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Text(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Text(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(entry) = map.next_entry()? {
            out.push(entry);
        }
        Ok(Value::Map(out))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_pretty(self, 0, &mut out);
        f.write_str(&out)
    }
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Go's `json.MarshalIndent(v, "", "  ")` layout.
fn write_pretty(v: &Value, depth: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) if f.is_finite() => out.push_str(&format_f64(*f)),
        Value::Float(f) => out.push_str(non_finite_name(*f)),
        Value::Text(s) => push_string(out, s),
        Value::Bytes(b) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_pretty(e, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Map(m) if m.is_empty() => out.push_str("{}"),
        Value::Map(m) => {
            let mut entries: Vec<(String, &Value)> = m
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Text(s) => s.clone(),
                        other => {
                            let mut s = String::new();
                            write_pretty(other, 0, &mut s);
                            s.replace('\n', "")
                        }
                    };
                    (key, v)
                })
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                push_string(out, &k);
                out.push_str(": ");
                write_pretty(v, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// Bytes that travel as Go's `[]byte`: base64 text (standard alphabet, padded) in
/// human-readable formats such as [`super::Json`], a byte string in [`super::Cbor`].
///
/// Deserializes from a byte string, from base64 text (raw UTF-8 bytes of the text in formats
/// that are not human-readable), from a sequence of integers 0..=255, or from `null` (empty, as
/// Go's nil `[]byte` is encoded as `null`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binary(pub Vec<u8>);

impl From<Vec<u8>> for Binary {
    fn from(v: Vec<u8>) -> Self {
        Binary(v)
    }
}

impl From<&[u8]> for Binary {
    fn from(v: &[u8]) -> Self {
        Binary(v.to_vec())
    }
}

impl From<Binary> for Vec<u8> {
    fn from(v: Binary) -> Self {
        v.0
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for Binary {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(BinaryVisitor { base64_text: true })
        } else {
            deserializer.deserialize_byte_buf(BinaryVisitor { base64_text: false })
        }
    }
}

struct BinaryVisitor {
    base64_text: bool,
}

impl<'de> Visitor<'de> for BinaryVisitor {
    type Value = Binary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes, base64 text or a sequence of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Binary, E> {
        if self.base64_text {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map(Binary)
                .map_err(|e| E::custom(format_args!("invalid base64 for bytes: {e}")))
        } else {
            Ok(Binary(v.as_bytes().to_vec()))
        }
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Binary, E> {
        Ok(Binary(v.to_vec()))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Binary, E> {
        Ok(Binary(v))
    }

    fn visit_none<E>(self) -> Result<Binary, E> {
        Ok(Binary::default())
    }

    fn visit_unit<E>(self) -> Result<Binary, E> {
        Ok(Binary::default())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Binary, D::Error> {
        Binary::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Binary, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Binary(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_indented_json() {
        let v = Value::Map(vec![
            (
                "b".into(),
                Value::Array(vec![1.into(), Value::Bytes(vec![1, 2])]),
            ),
            ("a".into(), Value::Map(vec![])),
            ("c".into(), Value::Array(vec![])),
        ]);
        assert_eq!(
            v.to_string(),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    \"AQI=\"\n  ],\n  \"c\": []\n}"
        );
        assert_eq!(Value::Float(100.0).to_string(), "100");
        assert_eq!(Value::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::from("<x>").to_string(), r#""\u003cx\u003e""#);
    }

    #[test]
    fn accessors() {
        let v = Value::Map(vec![("k".into(), 7.into())]);
        assert_eq!(v.get("k").and_then(Value::as_i64), Some(7));
        assert_eq!(Value::Float(3.0).as_u64(), Some(3));
        assert_eq!(Value::Float(3.5).as_i64(), None);
        assert_eq!(Value::Int(-1).as_u64(), None);
        assert_eq!(Value::from(Some("x")).as_str(), Some("x"));
        assert!(Value::from(None::<bool>).is_null());
    }
}
