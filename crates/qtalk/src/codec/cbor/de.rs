//! The CBOR deserializer: everything RFC 8949 allows that Go may send, defensively.

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, Visitor};

use crate::codec::error::Error;

const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_TAG: u8 = 6;
const BREAK: u8 = 0xff;
const NULL: u8 = 0xf6;
const UNDEFINED: u8 = 0xf7;

/// Arrays, maps and enum maps nested deeper than this are refused (serde_json's limit too),
/// so hostile input cannot exhaust the stack.
const MAX_DEPTH: u32 = 128;

type Result<T> = std::result::Result<T, Error>;

/// The head of a data item: major type, additional information and its argument (the value,
/// length, tag number or float bits; meaningless when `ai` is 31, indefinite length).
#[derive(Clone, Copy, Debug)]
struct Head {
    major: u8,
    ai: u8,
    arg: u64,
}

impl Head {
    fn indefinite(self) -> bool {
        self.ai == 31
    }
}

pub(super) struct Deserializer<'de> {
    input: &'de [u8],
    pos: usize,
    depth: u32,
}

impl<'de> Deserializer<'de> {
    pub(super) fn new(input: &'de [u8]) -> Self {
        Deserializer {
            input,
            pos: 0,
            depth: 0,
        }
    }

    /// How many bytes have been consumed.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    fn eof() -> Error {
        Error::new("unexpected end of input")
    }

    fn peek(&self) -> Result<u8> {
        self.input.get(self.pos).copied().ok_or_else(Self::eof)
    }

    fn take(&mut self, n: u64) -> Result<&'de [u8]> {
        if n > self.remaining() as u64 {
            return Err(Self::eof());
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.input[start..self.pos])
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn read_head(&mut self) -> Result<Head> {
        let [b] = self.take_array::<1>()?;
        let (major, ai) = (b >> 5, b & 0x1f);
        let arg = match ai {
            0..=23 => u64::from(ai),
            24 => u64::from(self.take_array::<1>()?[0]),
            25 => u64::from(u16::from_be_bytes(self.take_array()?)),
            26 => u64::from(u32::from_be_bytes(self.take_array()?)),
            27 => u64::from_be_bytes(self.take_array()?),
            28..=30 => return Err(Error::new(format!("malformed item: initial byte {b:#04x}"))),
            _ => {
                if matches!(major, 0 | 1 | MAJOR_TAG) {
                    return Err(Error::new(format!("malformed item: initial byte {b:#04x}")));
                }
                0
            }
        };
        Ok(Head { major, ai, arg })
    }

    /// The next item when it is a text string of definite length under 256 bytes holding
    /// UTF-8 (nearly every key, selector and short value), consumed; otherwise `None`, with
    /// nothing consumed, for the general path to read or refuse.
    fn short_text(&mut self) -> Option<&'de str> {
        let b = *self.input.get(self.pos)?;
        if b >> 5 != MAJOR_TEXT {
            return None;
        }
        let (len, head) = match b & 0x1f {
            n @ 0..=23 => (usize::from(n), 1),
            24 => (usize::from(*self.input.get(self.pos + 1)?), 2),
            _ => return None,
        };
        let start = self.pos + head;
        let body = self.input.get(start..start + len)?;
        let text = std::str::from_utf8(body).ok()?;
        self.pos = start + len;
        Some(text)
    }

    /// Consumes tags in front of the next item, except bignum tags (2, 3), which
    /// [`Self::deserialize_any`] turns into integers.
    fn skip_tags(&mut self) -> Result<()> {
        while self.peek()? >> 5 == MAJOR_TAG {
            let at = self.pos;
            let head = self.read_head()?;
            if head.arg == 2 || head.arg == 3 {
                self.pos = at;
                break;
            }
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::new(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// The content of a byte or text string whose head was just read: borrowed when of
    /// definite length, concatenated from its chunks when indefinite.
    fn string_body(&mut self, head: Head) -> Result<Cow<'de, [u8]>> {
        if !head.indefinite() {
            return self.take(head.arg).map(Cow::Borrowed);
        }
        let mut out = Vec::new();
        loop {
            if self.peek()? == BREAK {
                self.pos += 1;
                return Ok(Cow::Owned(out));
            }
            let chunk = self.read_head()?;
            if chunk.major != head.major || chunk.indefinite() {
                return Err(Error::new("malformed indefinite-length string: bad chunk"));
            }
            out.extend_from_slice(self.take(chunk.arg)?);
        }
    }

    fn visit_text<V: Visitor<'de>>(body: Cow<'de, [u8]>, visitor: V) -> Result<V::Value> {
        let bad = |_| Error::new("text string is not valid UTF-8");
        match body {
            Cow::Borrowed(b) => visitor.visit_borrowed_str(std::str::from_utf8(b).map_err(bad)?),
            Cow::Owned(v) => {
                visitor.visit_string(String::from_utf8(v).map_err(|e| bad(e.utf8_error()))?)
            }
        }
    }

    fn visit_bytes<V: Visitor<'de>>(body: Cow<'de, [u8]>, visitor: V) -> Result<V::Value> {
        match body {
            Cow::Borrowed(b) => visitor.visit_borrowed_bytes(b),
            Cow::Owned(v) => visitor.visit_byte_buf(v),
        }
    }

    fn visit_container<V: Visitor<'de>>(&mut self, head: Head, visitor: V) -> Result<V::Value> {
        self.enter()?;
        let len = if head.indefinite() {
            Len::Indefinite
        } else {
            Len::Definite(head.arg)
        };
        let mut access = Access {
            de: &mut *self,
            len,
        };
        let value = if head.major == 4 {
            visitor.visit_seq(&mut access)?
        } else {
            visitor.visit_map(&mut access)?
        };
        access.finish()?;
        self.leave();
        Ok(value)
    }

    /// Tag 2 (positive) or 3 (negative) bignum whose tag head was just read.
    fn visit_bignum<V: Visitor<'de>>(&mut self, negative: bool, visitor: V) -> Result<V::Value> {
        let head = self.read_head()?;
        if head.major != MAJOR_BYTES {
            return Err(Error::new("bignum tag must hold a byte string"));
        }
        let body = self.string_body(head)?;
        let digits: &[u8] = &body[body.iter().take_while(|b| **b == 0).count()..];
        if digits.len() > 16 {
            return Err(Error::new("bignum out of the 128-bit range"));
        }
        let n = digits
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        match (negative, u64::try_from(n), i128::try_from(n)) {
            (false, Ok(small), _) => visitor.visit_u64(small),
            (false, Err(_), _) => visitor.visit_u128(n),
            (true, _, Ok(n)) => visitor.visit_i128(-1 - n),
            (true, _, Err(_)) => Err(Error::new("bignum out of the 128-bit range")),
        }
    }

    /// Major type 7: simple values and floats.
    fn visit_simple<V: Visitor<'de>>(head: Head, visitor: V) -> Result<V::Value> {
        match head.ai {
            20 => visitor.visit_bool(false),
            21 => visitor.visit_bool(true),
            22 | 23 => visitor.visit_unit(),
            25 => visitor.visit_f64(f16_to_f64(head.arg as u16)),
            26 => visitor.visit_f64(f32::from_bits(head.arg as u32).into()),
            27 => visitor.visit_f64(f64::from_bits(head.arg)),
            // Unassigned simple values: Go reads them as unsigned integers.
            0..=19 => visitor.visit_u64(head.arg),
            24 if head.arg >= 32 => visitor.visit_u64(head.arg),
            24 => Err(Error::new("malformed simple value")),
            _ => Err(Error::new("unexpected break")),
        }
    }

    /// Skips one whole item.
    fn skip_value(&mut self) -> Result<()> {
        loop {
            let head = self.read_head()?;
            return match head.major {
                0 | 1 => Ok(()),
                2 | 3 => self.string_body(head).map(drop),
                4 | 5 => {
                    self.enter()?;
                    let per_entry = u64::from(head.major - 3);
                    if head.indefinite() {
                        while self.peek()? != BREAK {
                            self.skip_value()?;
                        }
                        self.pos += 1;
                    } else {
                        // Each item takes at least one byte, so garbage lengths end at EOF.
                        for _ in 0..head.arg.saturating_mul(per_entry) {
                            self.skip_value()?;
                        }
                    }
                    self.leave();
                    Ok(())
                }
                MAJOR_TAG => continue,
                _ => match head.ai {
                    31 => Err(Error::new("unexpected break")),
                    24 if head.arg < 32 => Err(Error::new("malformed simple value")),
                    _ => Ok(()),
                },
            };
        }
    }
}

/// Converts IEEE 754 binary16 bits to `f64` (exact: every half float is an `f64`).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mant = f64::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => mant * 2f64.powi(-24),
        31 if mant == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mant + 1024.0) * 2f64.powi(exp - 25),
    };
    sign * magnitude
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(text) = self.short_text() {
            return visitor.visit_borrowed_str(text);
        }
        loop {
            let head = self.read_head()?;
            return match head.major {
                0 => visitor.visit_u64(head.arg),
                1 => match i64::try_from(head.arg) {
                    Ok(n) => visitor.visit_i64(-1 - n),
                    Err(_) => visitor.visit_i128(-1 - i128::from(head.arg)),
                },
                MAJOR_BYTES => Deserializer::visit_bytes(self.string_body(head)?, visitor),
                MAJOR_TEXT => Deserializer::visit_text(self.string_body(head)?, visitor),
                4 | 5 => self.visit_container(head, visitor),
                MAJOR_TAG => match head.arg {
                    2 | 3 => self.visit_bignum(head.arg == 3, visitor),
                    // Other tags (times, URIs, self-described CBOR, …): the content alone.
                    _ => continue,
                },
                _ => Deserializer::visit_simple(head, visitor),
            };
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_tags()?;
        match self.peek()? {
            NULL | UNDEFINED => {
                self.pos += 1;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_string(visitor)
    }

    /// Text, or a byte string that is UTF-8 (Go's `[]byte` sent where a string is expected).
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(text) = self.short_text() {
            return visitor.visit_borrowed_str(text);
        }
        self.skip_tags()?;
        if self.peek()? >> 5 != MAJOR_BYTES {
            return self.deserialize_any(visitor);
        }
        let head = self.read_head()?;
        match self.string_body(head)? {
            Cow::Borrowed(b) => match std::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => visitor.visit_borrowed_bytes(b),
            },
            Cow::Owned(v) => match String::from_utf8(v) {
                Ok(s) => visitor.visit_string(s),
                Err(e) => visitor.visit_byte_buf(e.into_bytes()),
            },
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.skip_tags()?;
        let at = self.pos;
        let head = self.read_head()?;
        match head.major {
            MAJOR_TEXT => {
                self.pos = at;
                visitor.visit_enum(Enum {
                    de: self,
                    in_map: false,
                })
            }
            5 if head.indefinite() || head.arg == 1 => {
                self.enter()?;
                let value = visitor.visit_enum(Enum {
                    de: &mut *self,
                    in_map: true,
                })?;
                if head.indefinite() {
                    if self.peek()? != BREAK {
                        return Err(Error::new("enum map must have exactly one entry"));
                    }
                    self.pos += 1;
                }
                self.leave();
                Ok(value)
            }
            _ => Err(Error::new(
                "expected an enum: a text string or a map with one entry",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

enum Len {
    Definite(u64),
    Indefinite,
    Ended,
}

/// Items of an array or entries of a map.
struct Access<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    len: Len,
}

impl Access<'_, '_> {
    fn has_next(&mut self) -> Result<bool> {
        match self.len {
            Len::Definite(0) | Len::Ended => Ok(false),
            Len::Definite(n) => {
                self.len = Len::Definite(n - 1);
                Ok(true)
            }
            Len::Indefinite => {
                if self.de.peek()? == BREAK {
                    self.de.pos += 1;
                    self.len = Len::Ended;
                    Ok(false)
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn size_hint(&self, per_item: usize) -> Option<usize> {
        match self.len {
            // Never trust a length beyond what the input could hold.
            Len::Definite(n) => Some(n.min((self.de.remaining() / per_item) as u64) as usize),
            Len::Indefinite | Len::Ended => None,
        }
    }

    /// After the visitor is done: the container must have been read to its end.
    fn finish(self) -> Result<()> {
        match self.len {
            Len::Definite(0) | Len::Ended => Ok(()),
            Len::Definite(n) => Err(Error::new(format!(
                "{n} more items in the array or map than expected"
            ))),
            Len::Indefinite => {
                if self.de.peek()? == BREAK {
                    self.de.pos += 1;
                    Ok(())
                } else {
                    Err(Error::new("more items in the array or map than expected"))
                }
            }
        }
    }
}

impl<'de> de::SeqAccess<'de> for Access<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.has_next()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Access::size_hint(self, 1)
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.has_next()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Access::size_hint(self, 2)
    }
}

/// An enum: `"Variant"` (unit variants) or `{"Variant": content}`.
struct Enum<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    in_map: bool,
}

impl<'de> de::EnumAccess<'de> for Enum<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(&mut *self.de)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        if self.in_map {
            de::Deserialize::deserialize(&mut *self.de)
        } else {
            Ok(())
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if !self.in_map {
            return Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"newtype variant",
            ));
        }
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        if !self.in_map {
            return Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"tuple variant",
            ));
        }
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if !self.in_map {
            return Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"struct variant",
            ));
        }
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0x3e00), 1.5);
        assert_eq!(f16_to_f64(0xc400), -4.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 5.960_464_477_539_063e-8);
        assert_eq!(f16_to_f64(0x0400), 6.103_515_625e-5);
        assert!(f16_to_f64(0x8000).is_sign_negative());
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert_eq!(f16_to_f64(0xfc00), f64::NEG_INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
    }
}
