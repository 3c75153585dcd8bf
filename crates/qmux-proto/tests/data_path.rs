//! The bulk data path, frame by frame: which payloads go out without a copy, and how often
//! the window goes back to a peer that streams and to one that waits after every packet.

use bytes::{Bytes, BytesMut};
use qtalk_mux_proto::{ChannelId, Config, Event, Frame, ReadOutcome, Session};

const MAX_PACKET: u32 = 256 * 1024;
const WINDOW: u32 = 4 * 1024 * 1024;

/// A session with one channel the peer (id 7) opened and we accepted, its confirmation sent.
/// Returns the session, the channel and the bytes written so far.
fn accepted() -> (Session, ChannelId, u64) {
    accepted_with(true)
}

/// [`accepted`], with alignment padding on or off.
fn accepted_with(padding: bool) -> (Session, ChannelId, u64) {
    let config = Config::builder()
        .window(WINDOW)
        .max_packet(MAX_PACKET)
        .alignment_padding(padding)
        .build()
        .unwrap();
    let mut s = Session::new(config);
    feed(
        &mut s,
        &[Frame::Open {
            sender_id: 7,
            window: 64 * 1024 * 1024,
            max_packet: MAX_PACKET,
        }],
    );
    let id = loop {
        match s.poll_event() {
            Some(Event::Incoming(id)) => break id,
            Some(_) => {}
            None => panic!("no incoming channel"),
        }
    };
    s.accept(id).unwrap();
    let written = transmit(&mut s).iter().map(|b| b.len() as u64).sum();
    (s, id, written)
}

fn feed(s: &mut Session, frames: &[Frame]) {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    s.handle_input(&mut buf).expect("valid input");
}

fn transmit(s: &mut Session) -> Vec<Bytes> {
    let mut out = Vec::new();
    let n = s.poll_transmit(&mut out);
    s.on_transmitted(n);
    out
}

fn decode(bufs: &[Bytes]) -> Vec<Frame> {
    let mut all = BytesMut::new();
    for b in bufs {
        all.extend_from_slice(b);
    }
    let mut frames = Vec::new();
    while let Some(f) = Frame::decode(&mut all, u32::MAX).expect("decodes") {
        frames.push(f);
    }
    assert!(all.is_empty(), "whole frames only");
    frames
}

/// `len` bytes of a pattern, starting at an address `skew` past agreeing with stream
/// position `pos` modulo 64.
fn payload_at(len: usize, pos: u64, skew: usize) -> Bytes {
    let whole = Bytes::from((0..len + 128).map(|i| i as u8).collect::<Vec<u8>>());
    let base = whole.as_ptr() as usize as u64;
    let start = (pos.wrapping_sub(base) % 64) as usize + skew;
    whole.slice(start..start + len)
}

#[test]
fn a_payload_that_lines_up_with_the_stream_goes_out_without_a_copy() {
    let (mut s, id, written) = accepted();
    // The payload follows the 9-byte DATA header.
    let mut data = payload_at(MAX_PACKET as usize, written + 9, 0);
    let (ptr, copy) = (data.as_ptr(), data.clone());
    assert_eq!(s.send_bytes(id, &mut data).unwrap(), MAX_PACKET as usize);
    let out = transmit(&mut s);
    assert!(out.iter().any(|b| b.as_ptr() == ptr), "queued as it was");
    match &decode(&out)[..] {
        [Frame::Data { payload, .. }] => assert_eq!(payload, &copy),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_padding_a_payload_off_the_stream_is_copied_to_a_buffer_that_lines_up() {
    let (mut s, id, written) = accepted_with(false);
    let mut data = payload_at(MAX_PACKET as usize, written + 9, 1);
    let (ptr, copy) = (data.as_ptr(), data.clone());
    assert_eq!(s.send_bytes(id, &mut data).unwrap(), MAX_PACKET as usize);
    let out = transmit(&mut s);
    assert!(out.iter().all(|b| b.as_ptr() != ptr), "copied");
    // Every buffer handed out agrees with its stream position.
    let mut pos = written;
    for b in &out {
        if b.len() >= 16 * 1024 {
            assert_eq!((b.as_ptr() as usize as u64).wrapping_sub(pos) % 64, 0);
        }
        pos += b.len() as u64;
    }
    match &decode(&out)[..] {
        [Frame::Data { payload, .. }] => assert_eq!(payload, &copy),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_payload_off_the_stream_goes_out_without_a_copy_behind_zero_adjusts() {
    for skew in [1, 9, 32, 55, 63] {
        let (mut s, id, written) = accepted();
        let mut data = payload_at(MAX_PACKET as usize, written + 9, skew);
        let (ptr, copy) = (data.as_ptr(), data.clone());
        assert_eq!(s.send_bytes(id, &mut data).unwrap(), MAX_PACKET as usize);
        let out = transmit(&mut s);
        // The payload itself goes out, at a stream position it agrees with.
        let mut pos = written;
        let mut found = false;
        for b in &out {
            if b.as_ptr() == ptr {
                assert_eq!(
                    (ptr as usize as u64).wrapping_sub(pos) % 64,
                    0,
                    "skew {skew}"
                );
                found = true;
            }
            pos += b.len() as u64;
        }
        assert!(found, "skew {skew}: queued as it was");
        let frames = decode(&out);
        let (data_frame, pads) = frames.split_last().unwrap();
        assert!(pads.len() < 64, "skew {skew}: {} pads", pads.len());
        assert!(!pads.is_empty(), "skew {skew}: padded");
        for f in pads {
            assert!(
                matches!(f, Frame::WindowAdjust { bytes: 0, .. }),
                "skew {skew}: {f:?}"
            );
        }
        match data_frame {
            Frame::Data { payload, .. } => assert_eq!(payload, &copy),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn zero_adjusts_change_nothing_for_the_receiver() {
    let (mut s, id, _) = accepted();
    let pads = vec![
        Frame::WindowAdjust {
            recipient_id: id.get(),
            bytes: 0,
        };
        63
    ];
    feed(&mut s, &pads);
    assert!(transmit(&mut s).is_empty(), "nothing answered");
    while let Some(e) = s.poll_event() {
        assert!(!matches!(e, Event::Writable(_)), "{e:?}");
    }
}

#[test]
fn a_large_copied_write_lines_up_with_the_stream() {
    let (mut s, id, written) = accepted();
    let data = vec![5u8; 3 * MAX_PACKET as usize];
    assert_eq!(s.send(id, &data).unwrap(), data.len());
    let out = transmit(&mut s);
    let mut pos = written;
    for b in &out {
        if b.len() >= 16 * 1024 {
            assert_eq!((b.as_ptr() as usize as u64).wrapping_sub(pos) % 64, 0);
        }
        pos += b.len() as u64;
    }
    // The copies were placed where the stream would have them: three DATA frames, no
    // padding.
    let frames = decode(&out);
    assert_eq!(frames.len(), 3);
    assert!(
        out.iter().filter(|b| b.len() >= 16 * 1024).count() == 3,
        "no copy at hand-out"
    );
}

/// Feeds `first` bytes (a call header, say: none when 0), then `packets` DATA frames of a max
/// packet each, reading after every `read_every` of them; returns the WINDOW_ADJUSTs sent.
fn adjusts_after(first: usize, packets: usize, read_every: usize) -> Vec<u32> {
    let (mut s, id, _) = accepted();
    let mut grants = Vec::new();
    let read_all = |s: &mut Session, grants: &mut Vec<u32>| {
        while let Some(chunk) = s.read_chunk(id, usize::MAX).unwrap() {
            if chunk.is_empty() {
                break;
            }
        }
        for f in decode(&transmit(s)) {
            if let Frame::WindowAdjust { bytes, .. } = f {
                grants.push(bytes);
            }
        }
    };
    if first > 0 {
        for piece in vec![1u8; first].chunks(MAX_PACKET as usize / 2) {
            let payload = Bytes::copy_from_slice(piece);
            feed(
                &mut s,
                &[Frame::Data {
                    recipient_id: id.get(),
                    payload,
                }],
            );
        }
        read_all(&mut s, &mut grants);
    }
    for i in 0..packets {
        feed(
            &mut s,
            &[Frame::Data {
                recipient_id: id.get(),
                payload: vec![1u8; MAX_PACKET as usize].into(),
            }],
        );
        if (i + 1) % read_every == 0 {
            read_all(&mut s, &mut grants);
        }
    }
    grants
}

fn adjusts(packets: usize, read_every: usize) -> Vec<u32> {
    adjusts_after(0, packets, read_every)
}

#[test]
fn a_peer_that_waits_after_every_packet_gets_an_adjust_for_each() {
    // It never sends more than a packet before hearing from us.
    let grants = adjusts(16, 1);
    assert_eq!(grants, vec![MAX_PACKET; 16]);
}

#[test]
fn a_peer_that_waits_after_every_packet_gets_an_adjust_for_each_after_any_start() {
    // Whatever it wrote before its long write (a call header and its arguments, or more than
    // a packet of small writes), every packet of the long write gets its adjust.
    for first in [
        1,
        40,
        4096,
        MAX_PACKET as usize - 1,
        3 * MAX_PACKET as usize,
    ] {
        let grants = adjusts_after(first, 16, 1);
        assert_eq!(grants.len(), 16, "after {first}: {grants:?}");
        assert_eq!(grants[0] as usize, first + MAX_PACKET as usize);
        assert_eq!(grants[1..], vec![MAX_PACKET; 15]);
    }
}

#[test]
fn a_peer_that_sends_only_short_packets_gets_its_window_back_in_halves() {
    // No whole packet: nobody waits, and 640 small reads cost no adjust of their own.
    let (mut s, id, _) = accepted();
    let mut grants = Vec::new();
    for _ in 0..640 {
        let payload = vec![1u8; 16 * 1024].into();
        feed(
            &mut s,
            &[Frame::Data {
                recipient_id: id.get(),
                payload,
            }],
        );
        let mut buf = [0u8; 16 * 1024];
        assert_eq!(s.read(id, &mut buf).unwrap(), ReadOutcome::Data(buf.len()));
        for f in decode(&transmit(&mut s)) {
            if let Frame::WindowAdjust { bytes, .. } = f {
                grants.push(bytes);
            }
        }
    }
    assert_eq!(grants, vec![WINDOW / 2; 5]);
}

#[test]
fn a_streaming_peer_gets_its_window_back_in_halves() {
    // The whole 4 MiB window sent before each read: the peer streams, and 16 MiB consumed
    // cost 8 adjusts of 2 MiB rather than 64 of a packet each.
    assert_eq!(adjusts(64, 16), vec![WINDOW / 2; 8]);
}

/// Reads channel `id` to the end of what it holds: how many bytes, and whether every one of
/// them lies in `range` (the addresses of a read buffer: received without a copy).
fn all_read_from(s: &mut Session, id: ChannelId, range: std::ops::Range<usize>) -> (usize, bool) {
    let mut total = 0;
    let mut inside = true;
    while let Some(chunk) = s.read_chunk(id, usize::MAX).unwrap() {
        if chunk.is_empty() {
            break;
        }
        let at = chunk.as_ptr() as usize;
        inside &= range.contains(&at) && at + chunk.len() <= range.end;
        total += chunk.len();
    }
    (total, inside)
}

#[test]
fn a_large_payload_that_arrives_in_small_reads_is_received_without_a_copy() {
    let (mut s, id, _) = accepted();
    let len = MAX_PACKET as usize;
    let mut header = BytesMut::new();
    Frame::Data {
        recipient_id: id.get(),
        payload: vec![0u8; len].into(),
    }
    .encode(&mut header);
    header.truncate(9);
    s.handle_input(&mut header).unwrap();
    // The rest of the payload in a buffer of its own (as the driver reads it), filled by
    // reads of 20 KiB: each piece is far less than half of what is left of the buffer.
    let mut buf = BytesMut::with_capacity(len);
    let start = buf.as_ptr() as usize;
    let mut sent = 0;
    while sent < len {
        let n = (20 * 1024).min(len - sent);
        buf.extend_from_slice(&vec![7u8; n]);
        s.handle_input(&mut buf).unwrap();
        sent += n;
    }
    assert_eq!(buf.as_ptr() as usize, start + len, "no reallocation");
    assert_eq!(all_read_from(&mut s, id, start..start + len), (len, true));
}

#[test]
fn small_payloads_in_a_large_read_are_copied() {
    // Payloads of 5 KiB (more than the 4 KiB always copied) that share one large read: each
    // is copied, so that none pins the whole buffer.
    let (mut s, id, _) = accepted();
    let cap = 256 * 1024;
    let mut buf = BytesMut::with_capacity(cap);
    let start = buf.as_ptr() as usize;
    for _ in 0..40 {
        Frame::Data {
            recipient_id: id.get(),
            payload: vec![3u8; 5 * 1024].into(),
        }
        .encode(&mut buf);
    }
    assert_eq!(buf.as_ptr() as usize, start, "one buffer");
    s.handle_input(&mut buf).unwrap();
    let mut total = 0;
    while let Some(chunk) = s.read_chunk(id, usize::MAX).unwrap() {
        if chunk.is_empty() {
            break;
        }
        let at = chunk.as_ptr() as usize;
        assert!(!(start..start + cap).contains(&at), "copied, not shared");
        total += chunk.len();
    }
    assert_eq!(total, 40 * 5 * 1024);
}
