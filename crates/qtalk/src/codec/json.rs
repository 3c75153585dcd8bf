//! JSON as Go's `encoding/json` `Encoder.Encode` writes it.
//!
//! Encoding uses a serializer of our own rather than `serde_json`'s, because three Go rules
//! cannot be had through a `serde_json` formatter: map keys are sorted for *every* map type
//! (Go sorts `map[K]V` keys by their string form), non-finite floats are an error (Go refuses
//! NaN and ±Inf instead of writing `null`), and byte strings are base64 text (Go's `[]byte`).
//! Decoding is `serde_json`'s.

use base64::Engine as _;
use bytes::BytesMut;
use serde::ser::{self, Serialize};

use super::error::Error;
use super::{Codec, CodecError};

/// JSON, byte for byte as Go's `json.NewEncoder(w).Encode(v)` writes it.
///
/// Encoding: compact, one `\n` after the value; struct fields in declaration order; map keys
/// sorted by their string form (string and integer keys only); `<`, `>`, `&`, U+2028 and
/// U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`; `\b`, `\f`, `\n`,
/// `\r`, `\t` short escapes and other control characters as `\u00XX` (as Go 1.22 and later);
/// floats in the shortest form that round-trips (exact ties to even, as Go's `strconv`), laid
/// out as Go does (`100`, `1.5`, `1e+21`, `1e-7`; `f32` with `float32` digits); NaN and infinities are an error; byte strings (`serialize_bytes`) are base64 text
/// (standard alphabet, padded); `None` and `()` are `null`; enums as `"Variant"` or
/// `{"Variant":…}`.
///
/// Decoding (`serde_json`, with correctly rounded float parsing): one value, with or without
/// the trailing newline and surrounding whitespace; anything else after it is an error.
/// Unlike Go, object keys match struct fields case-sensitively.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Codec for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn encode_erased(
        &self,
        value: &dyn erased_serde::Serialize,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        encode(value, dst)
    }

    fn decode_erased(
        &self,
        src: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        let mut de = serde_json::Deserializer::from_slice(src);
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(|e| CodecError::Decode(e.to_string()))?;
        de.end().map_err(|e| CodecError::Decode(e.to_string()))
    }

    fn builtin(&self) -> Option<super::Builtin> {
        Some(super::Builtin::Json)
    }
}

/// [`Json`]'s encoding of `value`, appended to `dst` (unchanged on error).
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = dst.len();
    match value.serialize(&mut Serializer { out: dst }) {
        Ok(()) => {
            dst.extend_from_slice(b"\n");
            Ok(())
        }
        Err(e) => {
            dst.truncate(start);
            Err(CodecError::Encode(e.into_message()))
        }
    }
}

/// [`Json`]'s decoding of exactly `src` (as its `decode_erased`, without the erasure).
pub(crate) fn decode<S, T>(src: &[u8], seed: S) -> Result<T, CodecError>
where
    S: for<'de> serde::de::DeserializeSeed<'de, Value = T>,
{
    let mut de = serde_json::Deserializer::from_slice(src);
    let value = seed
        .deserialize(&mut de)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    de.end().map_err(|e| CodecError::Decode(e.to_string()))?;
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Text helpers shared with `Value`'s `Display`.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a quoted JSON string with Go's escaping (HTML-safe, U+2028/U+2029 escaped).
pub(crate) fn push_string(out: &mut impl Out, s: &str) {
    out.put(b"\"");
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f | b'<' | b'>' | b'&' => None,
            // U+2028 and U+2029 are E2 80 A8 / E2 80 A9 in UTF-8.
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.put(&bytes[start..i]);
                out.put(if bytes[i + 2] == 0xa8 {
                    b"\\u2028"
                } else {
                    b"\\u2029"
                });
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.put(&bytes[start..i]);
        match escape {
            Some(e) => out.put(e),
            None => out.put(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
        }
        i += 1;
        start = i;
    }
    out.put(&bytes[start..]);
    out.put(b"\"");
}

/// Lays out a float as Go's `encoding/json` does, given `ryu`'s rendering of it (shortest
/// round-trip digits, ties to even, as Go's `strconv`): plain decimal (`%f`) unless
/// `use_exp`, else `d.ddde±x` with the exponent unpadded (Go writes `e-07`, then trims it).
fn go_float(ryu_text: &str, use_exp: bool) -> String {
    // Split ryu's output ("-1.25e-7", "100.0", "1e21") into sign, digits and exponent.
    let (negative, rest) = match ryu_text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, ryu_text),
    };
    let (mantissa, exp) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = [int_part, frac_part].concat();
    // value = 0.DIGITS × 10^point
    let mut point = int_part.len() as i32 + exp;
    let leading = all.len() - all.trim_start_matches('0').len();
    point -= leading as i32;
    let digits = all.trim_matches('0');
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if digits.is_empty() {
        out.push('0');
        return out;
    }
    if use_exp {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = point - 1;
        out.push_str(if e < 0 { "e-" } else { "e+" });
        out.push_str(&e.unsigned_abs().to_string());
    } else if point <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(point.unsigned_abs() as usize));
        out.push_str(digits);
    } else if point as usize >= digits.len() {
        out.push_str(digits);
        out.push_str(&"0".repeat(point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
}

/// Formats a finite `f64` as Go's `encoding/json` does.
pub(crate) fn format_f64(v: f64) -> String {
    let abs = v.abs();
    let use_exp = abs != 0.0 && !(1e-6..1e21).contains(&abs);
    go_float(ryu::Buffer::new().format_finite(v), use_exp)
}

/// Formats a finite `f32` as Go's `encoding/json` does (shortest `float32` digits).
pub(crate) fn format_f32(v: f32) -> String {
    let abs = v.abs();
    let use_exp = abs != 0.0 && !(1e-6_f32..1e21_f32).contains(&abs);
    go_float(ryu::Buffer::new().format_finite(v), use_exp)
}

/// Go's error text for a float JSON cannot carry.
pub(crate) fn non_finite_name(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Byte sinks the JSON writer appends to.
pub(crate) trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Out for String {
    fn put(&mut self, bytes: &[u8]) {
        // Every caller hands whole UTF-8 sequences (escapes are ASCII, raw runs end on
        // character boundaries), so this never replaces anything.
        self.push_str(&String::from_utf8_lossy(bytes));
    }
}

// ---------------------------------------------------------------------------------------------
// The serializer.

struct Serializer<'a> {
    out: &'a mut BytesMut,
}

impl Serializer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn put_display(&mut self, v: impl std::fmt::Display) {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = write!(s, "{v}");
        self.put(s.as_bytes());
    }

    fn put_key(&mut self, key: &str) {
        push_string(self.out, key);
        self.put(b":");
    }
}

fn unsupported(what: &str) -> Error {
    Error::new(format!("json: unsupported value: {what}"))
}

impl<'a, 'b> ser::Serializer for &'b mut Serializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = SortedMap<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.put(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.put_display(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.put_display(v);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.put_display(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.put_display(v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(unsupported(non_finite_name(v.into())));
        }
        self.put(format_f32(v).as_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if !v.is_finite() {
            return Err(unsupported(non_finite_name(v)));
        }
        self.put(format_f64(v).as_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        push_string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.put(b"\"");
        let text = base64::engine::general_purpose::STANDARD.encode(v);
        self.put(text.as_bytes());
        self.put(b"\"");
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.put(b"null");
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.put(b"{");
        self.put_key(variant);
        value.serialize(&mut *self)?;
        self.put(b"}");
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        self.put(b"[");
        Ok(Compound::new(self, b"]"))
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.put(b"{");
        self.put_key(variant);
        self.put(b"[");
        Ok(Compound::new(self, b"]}"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<SortedMap<'a, 'b>, Error> {
        Ok(SortedMap {
            ser: self,
            entries: Vec::new(),
            key: None,
        })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'a, 'b>, Error> {
        self.put(b"{");
        Ok(Compound::new(self, b"}"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.put(b"{");
        self.put_key(variant);
        self.put(b"{");
        Ok(Compound::new(self, b"}}"))
    }
}

/// Arrays, structs and enum payloads: written straight through, in order.
struct Compound<'a, 'b> {
    ser: &'b mut Serializer<'a>,
    first: bool,
    close: &'static [u8],
}

impl<'a, 'b> Compound<'a, 'b> {
    fn new(ser: &'b mut Serializer<'a>, close: &'static [u8]) -> Self {
        Compound {
            ser,
            first: true,
            close,
        }
    }

    fn comma(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.ser.put(b",");
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.ser)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        self.ser.put_key(key);
        value.serialize(&mut *self.ser)
    }

    fn finish(self) -> Result<(), Error> {
        self.ser.put(self.close);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// Maps: entries are buffered, then written sorted by key (a stable sort, as Go's key order
/// is total for its map types and ties can only come from hand-built duplicate keys).
struct SortedMap<'a, 'b> {
    ser: &'b mut Serializer<'a>,
    entries: Vec<(String, BytesMut)>,
    key: Option<String>,
}

impl ser::SerializeMap for SortedMap<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(KeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error::new("json: map value without a key"))?;
        let mut buf = BytesMut::new();
        value.serialize(&mut Serializer { out: &mut buf })?;
        self.entries.push((key, buf));
        Ok(())
    }

    fn end(mut self) -> Result<(), Error> {
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.ser.put(b"{");
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if i > 0 {
                self.ser.put(b",");
            }
            self.ser.put_key(key);
            self.ser.put(value);
        }
        self.ser.put(b"}");
        Ok(())
    }
}

/// Turns a map key into its JSON object key: strings as they are, integers in decimal (Go's
/// rule for `map[int]T`); anything else is an error, as in Go.
struct KeySerializer;

fn bad_key() -> Error {
    Error::new("json: unsupported map key type (keys must be strings or integers)")
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    fn serialize_bool(self, _v: bool) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_i8(self, v: i8) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_i16(self, v: i16) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_i32(self, v: i32) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_i64(self, v: i64) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_i128(self, v: i128) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_u8(self, v: u8) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_u16(self, v: u16) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_u32(self, v: u32) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_u64(self, v: u64) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_u128(self, v: u128) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_f32(self, _v: f32) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_f64(self, _v: f64) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_char(self, v: char) -> Result<String, Error> {
        Ok(v.to_string())
    }

    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_none(self) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_unit(self) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, Error> {
        Err(bad_key())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(bad_key())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(bad_key())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(bad_key())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(bad_key())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(bad_key())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(bad_key())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(bad_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, v);
        out
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(s("<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(s("\u{2028}x\u{2029}"), r#""\u2028x\u2029""#);
        assert_eq!(
            s("\u{0}\u{1f}\u{8}\u{c}\n\r\t\"\\/\u{7f}é"),
            "\"\\u0000\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\u{7f}é\""
        );
        // U+2027 and U+202A share the lead bytes but are left alone.
        assert_eq!(s("\u{2027}\u{202a}"), "\"\u{2027}\u{202a}\"");
    }

    #[test]
    fn floats_like_go() {
        for (v, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (100.0, "100"),
            (1.5, "1.5"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1e-10, "1e-10"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(format_f64(v), want, "{v:?}");
        }
        assert_eq!(format_f32(1.1), "1.1");
        // Exact ties between two shortest candidates round to even, as in Go.
        assert_eq!(format_f32(f32::from_bits(0x48a2_0784)), "331836.12"); // 331836.125
        assert_eq!(
            format_f64(f64::from_bits(0x4302e9d1f716975a)),
            "665454697960171.2"
        );
        assert_eq!(format_f32(1e21), "1e+21");
    }
}
