//! The CBOR serializer (fxamacker/cbor v2.4.0 default encoding).

use bytes::BytesMut;
use serde::ser::{self, Serialize};

use crate::codec::error::Error;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;

const TAG_POS_BIGNUM: u64 = 2;
const TAG_NEG_BIGNUM: u64 = 3;

const NULL: u8 = 0xf6;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const FLOAT32: u8 = 0xfa;
const FLOAT64: u8 = 0xfb;
/// Go writes every NaN as the half float 0x7e00 and infinities as half floats.
const NAN: [u8; 3] = [0xf9, 0x7e, 0x00];
const POS_INF: [u8; 3] = [0xf9, 0x7c, 0x00];
const NEG_INF: [u8; 3] = [0xf9, 0xfc, 0x00];

/// The head (initial byte plus argument) of a data item, shortest form.
fn head(major: u8, n: u64) -> ([u8; 9], usize) {
    let mut b = [0u8; 9];
    let m = major << 5;
    let len = if n < 24 {
        b[0] = m | n as u8;
        1
    } else if n <= u64::from(u8::MAX) {
        b[0] = m | 24;
        b[1] = n as u8;
        2
    } else if n <= u64::from(u16::MAX) {
        b[0] = m | 25;
        b[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        3
    } else if n <= u64::from(u32::MAX) {
        b[0] = m | 26;
        b[1..5].copy_from_slice(&(n as u32).to_be_bytes());
        5
    } else {
        b[0] = m | 27;
        b[1..9].copy_from_slice(&n.to_be_bytes());
        9
    };
    (b, len)
}

pub(super) struct Serializer<'a> {
    out: &'a mut BytesMut,
}

impl<'a> Serializer<'a> {
    pub(super) fn new(out: &'a mut BytesMut) -> Self {
        Serializer { out }
    }

    fn head(&mut self, major: u8, n: u64) {
        let (b, len) = head(major, n);
        self.out.extend_from_slice(&b[..len]);
    }

    fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A tag 2/3 bignum: the magnitude as a byte string, big-endian, no leading zeros.
    fn bignum(&mut self, tag: u64, magnitude: u128) {
        self.head(MAJOR_TAG, tag);
        let bytes = magnitude.to_be_bytes();
        let skip = (magnitude.leading_zeros() / 8) as usize;
        self.head(MAJOR_BYTES, (bytes.len() - skip) as u64);
        self.out.extend_from_slice(&bytes[skip..]);
    }

    fn variant_key(&mut self, variant: &str) {
        self.head(MAJOR_MAP, 1);
        self.text(variant);
    }
}

impl<'a, 'b> ser::Serializer for &'b mut Serializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'b>;
    type SerializeTuple = Compound<'a, 'b>;
    type SerializeTupleStruct = Compound<'a, 'b>;
    type SerializeTupleVariant = Compound<'a, 'b>;
    type SerializeMap = Compound<'a, 'b>;
    type SerializeStruct = Compound<'a, 'b>;
    type SerializeStructVariant = Compound<'a, 'b>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.extend_from_slice(&[if v { TRUE } else { FALSE }]);
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
        if v >= 0 {
            self.head(MAJOR_UNSIGNED, v as u64);
        } else {
            // -1 - v, which is the bitwise complement.
            self.head(MAJOR_NEGATIVE, !v as u64);
        }
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        if v >= 0 {
            return self.serialize_u128(v as u128);
        }
        let magnitude = !v as u128;
        match u64::try_from(magnitude) {
            Ok(n) => self.head(MAJOR_NEGATIVE, n),
            Err(_) => self.bignum(TAG_NEG_BIGNUM, magnitude),
        }
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
        self.head(MAJOR_UNSIGNED, v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        match u64::try_from(v) {
            Ok(n) => self.head(MAJOR_UNSIGNED, n),
            Err(_) => self.bignum(TAG_POS_BIGNUM, v),
        }
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if v.is_nan() {
            self.out.extend_from_slice(&NAN);
        } else if v.is_infinite() {
            self.out
                .extend_from_slice(if v > 0.0 { &POS_INF } else { &NEG_INF });
        } else {
            self.out.extend_from_slice(&[FLOAT32]);
            self.out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if v.is_nan() {
            self.out.extend_from_slice(&NAN);
        } else if v.is_infinite() {
            self.out
                .extend_from_slice(if v > 0.0 { &POS_INF } else { &NEG_INF });
        } else {
            self.out.extend_from_slice(&[FLOAT64]);
            self.out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.text(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.text(v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.head(MAJOR_BYTES, v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(&[NULL]);
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
        self.text(variant);
        Ok(())
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
        self.variant_key(variant);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        Ok(Compound::new(self, MAJOR_ARRAY, len))
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'b>, Error> {
        Ok(Compound::new(self, MAJOR_ARRAY, Some(len)))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        Ok(Compound::new(self, MAJOR_ARRAY, Some(len)))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.variant_key(variant);
        Ok(Compound::new(self, MAJOR_ARRAY, Some(len)))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, 'b>, Error> {
        Ok(Compound::new(self, MAJOR_MAP, len))
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'b>, Error> {
        Ok(Compound::new(self, MAJOR_MAP, Some(len)))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'b>, Error> {
        self.variant_key(variant);
        Ok(Compound::new(self, MAJOR_MAP, Some(len)))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// An array or map being written. The head goes out first when the length is announced; if
/// the count turns out different (or was unknown), the head is rewritten at the end, so the
/// output always has definite lengths, like Go's.
pub(super) struct Compound<'a, 'b> {
    ser: &'b mut Serializer<'a>,
    major: u8,
    head_at: usize,
    announced: Option<u64>,
    count: u64,
}

impl<'a, 'b> Compound<'a, 'b> {
    fn new(ser: &'b mut Serializer<'a>, major: u8, len: Option<usize>) -> Self {
        let head_at = ser.out.len();
        let announced = len.map(|n| n as u64);
        if let Some(n) = announced {
            ser.head(major, n);
        }
        Compound {
            ser,
            major,
            head_at,
            announced,
            count: 0,
        }
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.count += 1;
        value.serialize(&mut *self.ser)
    }

    fn finish(self) -> Result<(), Error> {
        if self.announced == Some(self.count) {
            return Ok(());
        }
        let old_len = self.announced.map_or(0, |n| head(self.major, n).1);
        let (new, new_len) = head(self.major, self.count);
        let out = &mut *self.ser.out;
        let body_at = self.head_at + old_len;
        if old_len == new_len {
            out[self.head_at..body_at].copy_from_slice(&new[..new_len]);
        } else {
            let body = out[body_at..].to_vec();
            out.truncate(self.head_at);
            out.extend_from_slice(&new[..new_len]);
            out.extend_from_slice(&body);
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(&mut *self.ser)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.item(value)
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
        self.ser.text(key);
        self.item(value)
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
        self.ser.text(key);
        self.item(value)
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_shortest() {
        for (n, want) in [
            (0u64, &[0x00][..]),
            (23, &[0x17]),
            (24, &[0x18, 24]),
            (255, &[0x18, 0xff]),
            (256, &[0x19, 1, 0]),
            (65536, &[0x1a, 0, 1, 0, 0]),
            (u64::from(u32::MAX) + 1, &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
        ] {
            let (b, len) = head(0, n);
            assert_eq!(&b[..len], want, "{n}");
        }
    }
}
