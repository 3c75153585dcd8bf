//! The protocol core fed arbitrary bytes in arbitrary splits, with an application that
//! accepts, reads and releases channels as they come: never a panic, and memory held for
//! the peer stays within the configured budget.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use qtalk_mux_proto::{Config, Event, Session};

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the input is split and what the application does.
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let config = Config::builder()
        .window(4096)
        .max_packet(1024)
        .accept_backlog(4)
        .max_channels(8)
        .open_queue(8)
        .memory_budget(64 * 1024 + 6 * 4096)
        .send_buffer(64 * 1024)
        .id_reuse_delay((mode & 3) as usize)
        .build()
        .expect("valid config");
    let floor = config.max_channels() * qtalk_mux_proto::FLOOR_WINDOW.min(config.window()) as usize;
    let limit = config.memory_budget() - config.send_buffer() + floor;
    let mut s = Session::new(config);
    let step = 1 + (mode >> 2) as usize;
    let mut buf = BytesMut::new();
    let mut known = Vec::new();
    let mut out = Vec::new();
    for chunk in input.chunks(step) {
        buf.extend_from_slice(chunk);
        if s.handle_input(&mut buf).is_err() {
            s.terminate();
            return;
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Incoming(id) => {
                    if mode & 0x40 == 0 && s.accept(id).is_ok() {
                        known.push(id);
                    }
                }
                Event::OpenStarted(_, id) | Event::OpenReply(id) => known.push(id),
                _ => {}
            }
        }
        let held: usize = known.iter().map(|&id| s.buffered(id)).sum();
        assert!(held <= s.reserved() && s.reserved() <= limit);
        if mode & 0x80 != 0 {
            for &id in &known {
                let mut sink = [0u8; 512];
                let _ = s.read(id, &mut sink);
            }
        }
        if chunk.first().is_some_and(|b| b & 7 == 0) {
            if let Some(id) = known.pop() {
                s.release(id);
            }
        }
        if chunk.first().is_some_and(|b| b & 15 == 1) {
            let _ = s.open();
        }
        out.clear();
        let n = s.poll_transmit(&mut out);
        s.on_transmitted(n);
    }
    let _ = s.handle_eof(&buf);
});
