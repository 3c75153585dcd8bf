//! The rpc frame reader: arbitrary bytes in arbitrary chunks give frames or a clear error,
//! and no frame is larger than the limit.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = 1 + split as usize;
    let chunks: Vec<Bytes> = rest.chunks(step).map(Bytes::copy_from_slice).collect();
    if let Ok(frames) = qtalk::rpc::fuzz_read_frames(chunks, MAX) {
        let total: usize = frames.iter().map(|f| 4 + f.len()).sum();
        assert_eq!(total, rest.len());
        assert!(frames.iter().all(|f| f.len() <= MAX as usize));
    }
});
