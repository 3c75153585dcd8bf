//! The JSON codec's decoder: any bytes decode to a value or a clear error; a value that
//! decodes re-encodes, and that encoding decodes and re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qtalk::codec::{decode, encode, Json};
use qtalk::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode::<Value>(&Json, data) {
        let mut once = bytes::BytesMut::new();
        if encode(&Json, &v, &mut once).is_ok() {
            let back: Value = decode(&Json, &once).expect("our own output decodes");
            let mut twice = bytes::BytesMut::new();
            encode(&Json, &back, &mut twice).expect("a decoded value encodes");
            assert_eq!(once, twice);
        }
    }
});
