//! CBOR as github.com/fxamacker/cbor/v2 (v2.4.0, default options) writes it.
//!
//! Serializer and deserializer are our own: of the serde CBOR crates, `ciborium` shortens
//! floats (1.5 becomes `f9 3e00`, Go writes `fb 3ff8…`), `cbor4ii` writes `()` as `[]`, and
//! `minicbor-serde` encodes right but decodes neither `undefined` nor tags nor indefinite text
//! into typed fields, and none writes NaN and infinities the way Go does.

use bytes::BytesMut;

use super::{Codec, CodecError};

mod de;
mod ser;

/// CBOR (RFC 8949), byte for byte as Go's `cbor.NewEncoder(w).Encode(v)` with default options.
///
/// Encoding: integers in their shortest form (beyond 64 bits as bignum tags 2/3), `f64` always
/// as 9 bytes (`fb`) and `f32` as 5 (`fa`), but NaN as `f9 7e00` and ±Inf as `f9 7c00` /
/// `f9 fc00` (Go's defaults); `None`, `()` and unit structs as `null` (`f6`); byte strings
/// (`serialize_bytes`) as CBOR byte strings; structs as maps with text keys in field order;
/// maps in their iteration order; definite lengths always (a sequence or map of unknown length
/// is counted, then its head written); enums as `"Variant"` or `{"Variant": …}`.
///
/// Decoding accepts all of RFC 8949 that Go may send: any float width (half floats too, all
/// widened to `f64`), `null` and `undefined` as none/unit, definite and indefinite lengths,
/// tags (bignums 2/3 become integers, other tags are unwrapped), map keys in any order, byte
/// strings into `String`s when they are UTF-8. Nesting deeper than 128 levels, truncated or
/// malformed input, and bytes after the value are errors, never panics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cbor;

impl Codec for Cbor {
    fn name(&self) -> &'static str {
        "cbor"
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
        let mut de = de::Deserializer::new(src);
        if let Err(e) = visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de)) {
            return Err(decode_error(&e, &de));
        }
        end(&de, src)
    }

    fn builtin(&self) -> Option<super::Builtin> {
        Some(super::Builtin::Cbor)
    }
}

/// [`Cbor`]'s encoding of `value`, appended to `dst` (unchanged on error).
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    value: &T,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = dst.len();
    value
        .serialize(&mut ser::Serializer::new(dst))
        .map_err(|e| {
            dst.truncate(start);
            CodecError::Encode(e.into_message())
        })
}

/// [`Cbor`]'s decoding of exactly `src` (as its `decode_erased`, without the erasure).
pub(crate) fn decode<S, T>(src: &[u8], seed: S) -> Result<T, CodecError>
where
    S: for<'de> serde::de::DeserializeSeed<'de, Value = T>,
{
    let mut de = de::Deserializer::new(src);
    let value = seed
        .deserialize(&mut de)
        .map_err(|e| decode_error(&e, &de))?;
    end(&de, src)?;
    Ok(value)
}

fn decode_error(e: &dyn std::fmt::Display, de: &de::Deserializer<'_>) -> CodecError {
    CodecError::Decode(format!("cbor: {e} (near byte {})", de.position()))
}

/// Nothing may follow the value.
fn end(de: &de::Deserializer<'_>, src: &[u8]) -> Result<(), CodecError> {
    if de.position() != src.len() {
        return Err(CodecError::Decode(format!(
            "cbor: {} unexpected bytes after the value at byte {}",
            src.len() - de.position(),
            de.position()
        )));
    }
    Ok(())
}
