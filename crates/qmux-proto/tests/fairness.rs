//! The order frames leave in: control frames first, then the channels take turns, one DATA
//! frame each; a channel's EOF and CLOSE after its last DATA; and a send buffer full of one
//! channel's data still takes another channel's small write.

use bytes::{Bytes, BytesMut};
use qtalk_mux_proto::{ChannelId, Config, Event, Frame, Session};

const MAX_PACKET: u32 = 256 * 1024;

/// A session with `n` channels the peer opened (its ids 100, 101, ...) and we accepted,
/// the confirmations handed out. The peer gives each a 64 MiB window.
fn with_channels(n: u32) -> (Session, Vec<ChannelId>) {
    let config = Config::builder().max_packet(MAX_PACKET).build().unwrap();
    let mut s = Session::new(config);
    let opens: Vec<Frame> = (0..n)
        .map(|i| Frame::Open {
            sender_id: 100 + i,
            window: 64 << 20,
            max_packet: MAX_PACKET,
        })
        .collect();
    feed(&mut s, &opens);
    let mut ids = Vec::new();
    while let Some(e) = s.poll_event() {
        if let Event::Incoming(id) = e {
            s.accept(id).unwrap();
            ids.push(id);
        }
    }
    transmit(&mut s, usize::MAX);
    (s, ids)
}

fn feed(s: &mut Session, frames: &[Frame]) {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    s.handle_input(&mut buf).expect("valid input");
}

/// One batch of at least `max` bytes, as frames.
fn transmit(s: &mut Session, max: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    let n = s.poll_transmit_up_to(&mut out, max);
    s.on_transmitted(n);
    let mut all = BytesMut::new();
    for b in &out {
        all.extend_from_slice(b);
    }
    assert_eq!(all.len(), n);
    let mut frames = Vec::new();
    while let Some(f) = Frame::decode(&mut all, u32::MAX).expect("decodes") {
        // Alignment padding (zero adjusts ahead of large payloads) is left out.
        if !matches!(f, Frame::WindowAdjust { bytes: 0, .. }) {
            frames.push(f);
        }
    }
    assert!(all.is_empty(), "whole frames only");
    frames
}

/// Batches of at least `max` bytes until none are left, as frames.
fn transmit_all(s: &mut Session, max: usize) -> Vec<Frame> {
    let mut all = Vec::new();
    while s.has_transmit() {
        all.extend(transmit(s, max));
    }
    all
}

/// The bytes of DATA each peer id got in `frames`, in the order they first appear.
fn data_bytes(frames: &[Frame]) -> Vec<(u32, usize)> {
    let mut out: Vec<(u32, usize)> = Vec::new();
    for f in frames {
        if let Frame::Data {
            recipient_id,
            payload,
        } = f
        {
            match out.iter_mut().find(|(id, _)| id == recipient_id) {
                Some((_, n)) => *n += payload.len(),
                None => out.push((*recipient_id, payload.len())),
            }
        }
    }
    out
}

/// The peer's id each DATA frame of `frames` goes to.
fn data_to(frames: &[Frame]) -> Vec<u32> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { recipient_id, .. } => Some(*recipient_id),
            _ => None,
        })
        .collect()
}

#[test]
fn channels_take_turns_one_frame_each() {
    let (mut s, ids) = with_channels(3);
    // Channel 0 queues 1 MiB (four frames), then channels 1 and 2 a small message each.
    let bulk = Bytes::from(vec![1u8; 1 << 20]);
    assert_eq!(s.send_bytes(ids[0], &mut bulk.clone()).unwrap(), 1 << 20);
    s.send(ids[1], b"call one").unwrap();
    s.send(ids[2], b"call two").unwrap();
    // The channels that sent little go first, then the bulk's frames, in slices of at most
    // 32 KiB while other channels are busy.
    let frames = transmit_all(&mut s, usize::MAX);
    assert_eq!(data_to(&frames)[..3], [101, 102, 100]);
    assert_eq!(data_bytes(&frames), [(101, 8), (102, 8), (100, 1 << 20)]);
    assert!(frames.iter().all(|f| match f {
        Frame::Data { payload, .. } => payload.len() <= 32 * 1024,
        _ => true,
    }));
    // Two bulk channels alternate, frame by frame.
    let more = Bytes::from(vec![1u8; 400 * 1024]);
    assert_eq!(s.send_bytes(ids[0], &mut more.clone()).unwrap(), more.len());
    assert_eq!(s.send_bytes(ids[1], &mut more.clone()).unwrap(), more.len());
    let order = data_to(&transmit_all(&mut s, usize::MAX));
    assert_eq!(order.len(), 2 * 13);
    for pair in order.chunks(2) {
        assert_eq!(pair, [100, 101]);
    }
}

#[test]
fn a_small_frame_waits_behind_one_batch_at_most() {
    let (mut s, ids) = with_channels(2);
    let bulk = Bytes::from(vec![1u8; 1 << 20]);
    assert_eq!(s.send_bytes(ids[0], &mut bulk.clone()).unwrap(), 1 << 20);
    // With nobody else busy lately, the driver takes a whole frame ...
    let first = transmit(&mut s, 1);
    assert_eq!(data_bytes(&first), [(100, 256 * 1024)]);
    // ... and a call's message queued now leaves in the next batch, before the bulk's rest.
    s.send(ids[1], b"call").unwrap();
    assert_eq!(data_to(&transmit(&mut s, 1)), vec![101]);
    // The rest follows in slices while the call is recent: every batch is one slice.
    let batch = transmit(&mut s, usize::MAX);
    assert_eq!(data_bytes(&batch), [(100, 32 * 1024)]);
    let rest = transmit_all(&mut s, usize::MAX);
    assert_eq!(data_bytes(&rest), [(100, (3 << 18) - (32 << 10))]);
}

#[test]
fn control_frames_go_first() {
    let (mut s, ids) = with_channels(2);
    let bulk = Bytes::from(vec![1u8; 1 << 20]);
    assert_eq!(s.send_bytes(ids[0], &mut bulk.clone()).unwrap(), 1 << 20);
    // The peer opens a third channel, and closes the second (our CLOSE answers it).
    feed(
        &mut s,
        &[
            Frame::Open {
                sender_id: 102,
                window: 1 << 20,
                max_packet: MAX_PACKET,
            },
            Frame::Close {
                recipient_id: ids[1].get(),
            },
        ],
    );
    while let Some(e) = s.poll_event() {
        if let Event::Incoming(id) = e {
            s.accept(id).unwrap();
        }
    }
    let frames = transmit(&mut s, usize::MAX);
    assert!(
        matches!(
            &frames[..4],
            [
                Frame::Close { recipient_id: 101 },
                Frame::OpenConfirm {
                    recipient_id: 102,
                    ..
                },
                Frame::Data {
                    recipient_id: 100,
                    ..
                },
                Frame::Data {
                    recipient_id: 100,
                    ..
                }
            ]
        ),
        "{frames:?}"
    );
}

#[test]
fn eof_and_close_follow_the_channels_data() {
    let (mut s, ids) = with_channels(2);
    let bulk = Bytes::from(vec![1u8; 1 << 20]);
    assert_eq!(s.send_bytes(ids[0], &mut bulk.clone()).unwrap(), 1 << 20);
    s.close_write(ids[0]).unwrap();
    s.close(ids[0]).unwrap();
    // The other channel's EOF, with nothing queued before it, leaves at once.
    s.close_write(ids[1]).unwrap();
    let frames = transmit(&mut s, usize::MAX);
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| match f {
            Frame::Data { recipient_id, .. } => format!("data {recipient_id}"),
            Frame::Eof { recipient_id } => format!("eof {recipient_id}"),
            Frame::Close { recipient_id } => format!("close {recipient_id}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "eof 101",
            "data 100",
            "data 100",
            "data 100",
            "data 100",
            "eof 100",
            "close 100"
        ]
    );
}

#[test]
fn a_full_send_buffer_still_takes_another_channels_small_write() {
    let (mut s, ids) = with_channels(3);
    let send_buffer = s.config().send_buffer();
    // Channel 0 fills the send buffer.
    let bulk = Bytes::from(vec![1u8; 4 * send_buffer]);
    let taken = s.send_bytes(ids[0], &mut bulk.clone()).unwrap();
    assert!(taken >= send_buffer - MAX_PACKET as usize, "{taken}");
    assert_eq!(s.send_capacity(ids[0]).unwrap(), 0, "the bulk writer waits");
    // Channel 1, with nothing queued, still has room: a part kept for such channels.
    assert_eq!(s.send(ids[1], &[2u8; 1000]).unwrap(), 1000);
    // Once it has something queued, it waits like the others.
    assert_eq!(s.send_capacity(ids[1]).unwrap(), 0);
    // What waits stays within the send buffer and an eighth of it.
    assert!(
        s.unsent() <= send_buffer + send_buffer / 8,
        "{}",
        s.unsent()
    );
    // Handed out and written, the buffer takes more again.
    transmit(&mut s, usize::MAX);
    assert!(s.send_capacity(ids[0]).unwrap() > 0);
    assert!(s.send_capacity(ids[2]).unwrap() > 0);
}

#[test]
fn frames_queued_when_the_id_is_given_up_leave_before_its_next_channel() {
    let (mut s, ids) = with_channels(2);
    let bulk = Bytes::from(vec![1u8; 400 * 1024]);
    assert_eq!(s.send_bytes(ids[1], &mut bulk.clone()).unwrap(), bulk.len());
    // Busy elsewhere: channel 0's data keeps channel 1's turn from coming.
    assert_eq!(s.send_bytes(ids[0], &mut bulk.clone()).unwrap(), bulk.len());
    s.release(ids[1]);
    feed(
        &mut s,
        &[Frame::Close {
            recipient_id: ids[1].get(),
        }],
    );
    // Channel 1 is gone; what it had queued (and its CLOSE) leaves ahead of the rest.
    let frames = transmit(&mut s, 1);
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(data_to(&frames[..2]), vec![101; 2]);
    assert!(matches!(frames[2], Frame::Close { recipient_id: 101 }));
    assert_eq!(data_to(&transmit(&mut s, usize::MAX)), vec![100; 2]);
}
