//! The session's limits, frame by frame: channel count, accept backlog, OPENs waiting
//! unconfirmed, the memory budget and this side's queued opens. A peer over a limit is slowed
//! down (its OPENs wait, its windows shrink), and refused only past the bounds.

use bytes::BytesMut;
use qtalk_mux_proto::{ChannelId, Config, Event, Frame, OpenStart, Session};

const WINDOW: u32 = 256 * 1024;
const SEND_BUFFER: usize = 64 * 1024;

fn config(max_channels: usize, budget_windows: usize) -> Config {
    config_budget(max_channels, SEND_BUFFER + budget_windows * WINDOW as usize)
}

fn config_budget(max_channels: usize, budget: usize) -> Config {
    Config::builder()
        .window(WINDOW)
        .max_packet(32 * 1024)
        .accept_backlog(1000)
        .max_channels(max_channels)
        .open_queue(4)
        .memory_budget(budget)
        .send_buffer(SEND_BUFFER)
        .id_reuse_delay(0)
        .build()
        .expect("valid config")
}

fn feed(s: &mut Session, frames: &[Frame]) {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    s.handle_input(&mut buf).expect("valid input");
}

/// Every frame the session queued, decoded.
fn sent(s: &mut Session) -> Vec<Frame> {
    let mut out = Vec::new();
    let n = s.poll_transmit(&mut out);
    s.on_transmitted(n);
    let mut all = BytesMut::new();
    for b in out {
        all.extend_from_slice(&b);
    }
    let mut frames = Vec::new();
    while let Some(f) = Frame::decode(&mut all, u32::MAX).expect("decodes") {
        frames.push(f);
    }
    assert!(all.is_empty(), "whole frames only");
    frames
}

fn incoming(s: &mut Session) -> Vec<ChannelId> {
    let mut ids = Vec::new();
    while let Some(ev) = s.poll_event() {
        if let Event::Incoming(id) = ev {
            ids.push(id);
        }
    }
    ids
}

fn open(sender_id: u32) -> Frame {
    Frame::Open {
        sender_id,
        window: 1 << 20,
        max_packet: 32 * 1024,
    }
}

#[test]
fn opens_past_the_channel_limit_wait_then_get_confirmed_in_order() {
    let mut s = Session::new(config(2, 100));
    feed(&mut s, &[open(10), open(11), open(12), open(13)]);
    let ids = incoming(&mut s);
    assert_eq!(ids.len(), 2, "two slots");
    assert_eq!(s.opens_waiting(), 2);
    for &id in &ids {
        s.accept(id).unwrap();
    }
    let confirmed: Vec<u32> = sent(&mut s)
        .into_iter()
        .filter_map(|f| match f {
            Frame::OpenConfirm { recipient_id, .. } => Some(recipient_id),
            _ => None,
        })
        .collect();
    assert_eq!(confirmed, [10, 11]);
    // Nothing was refused; one slot frees (CLOSE handshake done, handle released): the oldest
    // waiting OPEN is admitted.
    feed(
        &mut s,
        &[Frame::Close {
            recipient_id: ids[0].get(),
        }],
    );
    s.release(ids[0]);
    let next = incoming(&mut s);
    assert_eq!(next.len(), 1);
    assert_eq!(s.remote_id(next[0]), Some(12));
    assert_eq!(s.opens_waiting(), 1);
}

#[test]
fn only_past_the_open_queue_is_an_open_refused() {
    let mut s = Session::new(config(1, 100));
    // One admitted, four wait (the queue's bound), the sixth is refused.
    feed(&mut s, &(0..6).map(open).collect::<Vec<_>>());
    assert_eq!(incoming(&mut s).len(), 1);
    assert_eq!(s.opens_waiting(), 4);
    let refused: Vec<u32> = sent(&mut s)
        .into_iter()
        .filter_map(|f| match f {
            Frame::OpenFailure { recipient_id } => Some(recipient_id),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [5]);
}

#[test]
fn waiting_opens_are_refused_when_their_time_is_up() {
    let mut s = Session::new(config(1, 100));
    feed(&mut s, &[open(0), open(1), open(2)]);
    let first_batch = s.opens_received();
    feed(&mut s, &[open(3)]);
    assert_eq!(s.opens_waiting(), 3);
    // The driver's deadline for the first input passed: its waiting OPENs are refused.
    s.refuse_waiting(first_batch);
    let refused: Vec<u32> = sent(&mut s)
        .into_iter()
        .filter_map(|f| match f {
            Frame::OpenFailure { recipient_id } => Some(recipient_id),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [1, 2]);
    assert_eq!(s.opens_waiting(), 1);
}

#[test]
fn the_budget_shrinks_windows_down_to_the_floor() {
    // Room for two full windows and a half.
    let budget = SEND_BUFFER + 2 * WINDOW as usize + WINDOW as usize / 2;
    let cfg = config_budget(100, budget);
    let mut s = Session::new(cfg);
    feed(&mut s, &[open(0), open(1), open(2), open(3), open(4)]);
    let ids = incoming(&mut s);
    assert_eq!(ids.len(), 5, "the budget never holds a channel back");
    for &id in &ids {
        s.accept(id).unwrap();
    }
    let windows: Vec<u32> = sent(&mut s)
        .into_iter()
        .filter_map(|f| match f {
            Frame::OpenConfirm { window, .. } => Some(window),
            _ => None,
        })
        .collect();
    let floor = qtalk_mux_proto::FLOOR_WINDOW;
    assert_eq!(windows, [WINDOW, WINDOW, WINDOW / 2, floor, floor]);
    let granted = 2 * WINDOW as usize + WINDOW as usize / 2 + 2 * floor as usize;
    assert_eq!(s.reserved(), granted);

    // The peer fills the first channel; what it sends stays within the grants.
    let data = Frame::Data {
        recipient_id: ids[0].get(),
        payload: vec![7u8; 32 * 1024].into(),
    };
    feed(&mut s, &vec![data; 8]);
    assert_eq!(s.buffered(ids[0]), WINDOW as usize);
    assert!(s.reserved() <= budget - SEND_BUFFER + 2 * floor as usize);

    // Releasing a channel frees its share: the next channel gets it (less what the floor
    // windows took).
    s.release(ids[0]);
    feed(
        &mut s,
        &[
            Frame::Close {
                recipient_id: ids[0].get(),
            },
            open(5),
        ],
    );
    let next = incoming(&mut s);
    s.accept(next[0]).unwrap();
    let window = sent(&mut s).into_iter().find_map(|f| match f {
        Frame::OpenConfirm { window, .. } => Some(window),
        _ => None,
    });
    assert_eq!(window, Some(WINDOW - 2 * floor));
}

#[test]
fn a_short_window_grows_back_when_the_budget_allows() {
    let cfg = config_budget(100, SEND_BUFFER + WINDOW as usize + WINDOW as usize / 2);
    let mut s = Session::new(cfg);
    feed(&mut s, &[open(0), open(1)]);
    let ids = incoming(&mut s);
    for &id in &ids {
        s.accept(id).unwrap();
    }
    let _ = sent(&mut s);
    // The full channel goes away; the short one is read from and gets its window topped up.
    s.release(ids[0]);
    feed(
        &mut s,
        &[Frame::Close {
            recipient_id: ids[0].get(),
        }],
    );
    let _ = sent(&mut s);
    let short = ids[1];
    let half = WINDOW / 2;
    let piece = Frame::Data {
        recipient_id: short.get(),
        payload: vec![1u8; (half / 4) as usize].into(),
    };
    feed(&mut s, &[piece.clone(), piece]);
    let mut dst = vec![0u8; half as usize];
    s.read(short, &mut dst).unwrap();
    let adjusts: Vec<u32> = sent(&mut s)
        .into_iter()
        .filter_map(|f| match f {
            Frame::WindowAdjust { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(
        adjusts,
        [half / 2 + half],
        "the consumed bytes plus the missing half"
    );
    assert_eq!(s.reserved(), WINDOW as usize);
}

#[test]
fn our_opens_queue_at_the_channel_limit_and_start_in_order() {
    let mut s = Session::new(config(2, 100));
    let a = s.open().unwrap();
    let b = s.open().unwrap();
    assert!(matches!(
        (a, b),
        (OpenStart::Started(_), OpenStart::Started(_))
    ));
    let (OpenStart::Queued(t1), OpenStart::Queued(t2), OpenStart::Queued(t3)) =
        (s.open().unwrap(), s.open().unwrap(), s.open().unwrap())
    else {
        panic!("the third open must wait");
    };
    // The second one gives up.
    assert!(s.cancel_open(t2));
    let opens = sent(&mut s)
        .iter()
        .filter(|f| matches!(f, Frame::Open { .. }))
        .count();
    assert_eq!(opens, 2, "only the started opens are on the wire");
    // The peer refuses the first channel; once the opener lets go of it, its slot goes to
    // the oldest queued open.
    let OpenStart::Started(first) = a else {
        unreachable!()
    };
    feed(
        &mut s,
        &[Frame::OpenFailure {
            recipient_id: first.get(),
        }],
    );
    s.release(first);
    let mut started = Vec::new();
    while let Some(ev) = s.poll_event() {
        if let Event::OpenStarted(t, _) = ev {
            started.push(t);
        }
    }
    assert_eq!(started, [t1]);
    assert!(!s.cancel_open(t1), "started already");
    assert!(s.cancel_open(t3));
}
