//! Property-based fuzzing of the codecs: any bytes decode to a value or a clear error (never a
//! panic or a runaway allocation), values survive a round trip, and re-encoding what was decoded
//! gives the same bytes.

use bytes::BytesMut;
use proptest::prelude::*;
use qtalk::codec::{decode, encode, Cbor, Codec, Json};
use qtalk::Value;

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| Value::Int(i.into())),
        any::<u64>().prop_map(|i| Value::Int(i.into())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,6}".prop_map(Value::Text), inner), 0..6)
                .prop_map(Value::Map),
        ]
    })
}

/// A codec that forwards to another through its object-safe methods only: what a codec of
/// one's own goes through, and what the built-in ones skip.
struct Erased<C>(C);

impl<C: Codec> Codec for Erased<C> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn encode_erased(
        &self,
        value: &dyn erased_serde::Serialize,
        dst: &mut BytesMut,
    ) -> Result<(), qtalk::codec::CodecError> {
        self.0.encode_erased(value, dst)
    }
    fn decode_erased(
        &self,
        src: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), qtalk::codec::CodecError> {
        self.0.decode_erased(src, visit)
    }
}

/// A typed shape with the failure modes of a struct: missing and mistyped fields.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Header {
    #[serde(rename = "Selector")]
    selector: String,
    #[serde(rename = "N", default)]
    n: Option<u32>,
}

/// The typed path and the erased path agree: same bytes, same values, same error text.
fn same_both_ways(
    codec: &dyn Codec,
    erased: &dyn Codec,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    // Compared by their debug form: NaN is a value too.
    let show = |r: Result<Value, qtalk::codec::CodecError>| match r {
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("error: {e}"),
    };
    prop_assert_eq!(show(decode(codec, bytes)), show(decode(erased, bytes)));
    let typed = |c: &dyn Codec| decode::<Header>(c, bytes).map_err(|e| e.to_string());
    prop_assert_eq!(typed(codec), typed(erased));
    Ok(())
}

fn enc(codec: &dyn Codec, v: &Value) -> BytesMut {
    let mut out = BytesMut::new();
    encode(codec, v, &mut out).expect("encodes");
    out
}

/// CBOR-shaped bytes: a valid encoding with a few bytes changed, cut, or extended.
fn mangled_cbor() -> impl Strategy<Value = Vec<u8>> {
    (
        value(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<usize>(),
    )
        .prop_map(|(v, edits, cut)| {
            let mut b = enc(&Cbor, &v).to_vec();
            for (at, byte) in edits {
                if !b.is_empty() {
                    let i = at % b.len();
                    b[i] = byte;
                }
            }
            let keep = cut % (b.len() + 1);
            b.truncate(keep.max(b.len() / 2));
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for codec in [&Json as &dyn Codec, &Cbor] {
            if let Err(e) = decode::<Value>(codec, &bytes) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn typed_and_erased_paths_agree(v in value(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let pairs = [(&Json as &dyn Codec, &Erased(Json) as &dyn Codec), (&Cbor, &Erased(Cbor))];
        for (codec, erased) in pairs {
            prop_assert_eq!(enc(codec, &v), enc(erased, &v));
            same_both_ways(codec, erased, &enc(codec, &v))?;
            same_both_ways(codec, erased, &bytes)?;
            let header = Header { selector: "echo".into(), n: Some(7) };
            let mut b = BytesMut::new();
            encode(codec, &header, &mut b).unwrap();
            same_both_ways(codec, erased, &b)?;
            let cut = bytes.len() % (b.len() + 1);
            same_both_ways(codec, erased, &b[..cut])?;
        }
    }

    #[test]
    fn mangled_cbor_decodes_or_fails_cleanly(bytes in mangled_cbor()) {
        if let Ok(v) = decode::<Value>(&Cbor, &bytes) {
            // Whatever was accepted re-encodes and decodes to the same value.
            let again = enc(&Cbor, &v);
            prop_assert_eq!(decode::<Value>(&Cbor, &again).unwrap(), v);
        }
    }

    #[test]
    fn cbor_round_trips_every_value(v in value()) {
        let bytes = enc(&Cbor, &v);
        let back: Value = decode(&Cbor, &bytes).unwrap();
        prop_assert_eq!(&back, &v);
        prop_assert_eq!(enc(&Cbor, &back), bytes);
    }

    #[test]
    fn json_encoding_is_stable(v in value()) {
        // JSON has no byte strings or integer/float distinction of its own: compare what comes
        // back by its encoding, which must be a fixed point.
        let bytes = enc(&Json, &v);
        let back: Value = decode(&Json, &bytes).unwrap();
        prop_assert_eq!(enc(&Json, &back), bytes);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    for codec in [&Json as &dyn Codec, &Cbor] {
        let deep = if codec.name() == "json" {
            "[".repeat(100_000).into_bytes()
        } else {
            vec![0x81; 100_000]
        };
        let err = decode::<Value>(codec, &deep).unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn huge_length_prefixes_do_not_allocate_up_front() {
    // A CBOR array, map, text and byte string each claiming 2^63 items or bytes.
    for head in [0x9b_u8, 0xbb, 0x7b, 0x5b] {
        let mut b = vec![head, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        b.extend_from_slice(&[0u8; 8]);
        assert!(decode::<Value>(&Cbor, &b).is_err());
    }
}
