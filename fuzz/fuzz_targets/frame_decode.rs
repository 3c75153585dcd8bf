//! qmux frame decoding: any bytes decode to frames or a clear error, never a panic, and every
//! decoded frame re-encodes to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use qtalk_mux_proto::Frame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    while let Ok(Some(frame)) = Frame::decode(&mut buf, 1 << 20) {
        let used = data.len() - buf.len() - offset;
        let mut again = BytesMut::new();
        frame.encode(&mut again);
        assert_eq!(&again[..], &data[offset..offset + used]);
        offset += used;
    }
});
