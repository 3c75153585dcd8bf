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
