//! Property-based fuzzing of the protocol core: streams of plausible frames (random ids,
//! windows, sizes and orders), some of them corrupted, fed in random splits to a session whose
//! application side opens, accepts, refuses, reads, writes and closes at random. Whatever the
//! input: no panic, a clear protocol error or none, and memory bounded by the configuration.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use qtalk_mux_proto::{ChannelId, Config, Event, Frame, Session};

const WINDOW: u32 = 4096;
const MAX_PACKET: u32 = 1024;
const BACKLOG: usize = 8;

fn config() -> Config {
    Config::builder()
        .window(WINDOW)
        .max_packet(MAX_PACKET)
        .accept_backlog(BACKLOG)
        .max_channels(16)
        .open_queue(8)
        .memory_budget(64 * 1024 + 8 * WINDOW as usize)
        .send_buffer(64 * 1024)
        .id_reuse_delay(4)
        .build()
        .expect("valid config")
}

/// Ids near the ones a session hands out, plus the odd far one.
fn id() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..6, 1 => any::<u32>()]
}

fn size() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..2048,
        1 => Just(0u32),
        1 => Just(u32::MAX),
        1 => Just(1u32 << 31),
        1 => any::<u32>(),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (id(), size(), size()).prop_map(|(sender_id, window, max_packet)| Frame::Open {
            sender_id,
            window,
            max_packet
        }),
        (id(), id(), size(), size()).prop_map(|(recipient_id, sender_id, window, max_packet)| {
            Frame::OpenConfirm {
                recipient_id,
                sender_id,
                window,
                max_packet,
            }
        }),
        id().prop_map(|recipient_id| Frame::OpenFailure { recipient_id }),
        (id(), size()).prop_map(|(recipient_id, bytes)| Frame::WindowAdjust {
            recipient_id,
            bytes
        }),
        (id(), prop::collection::vec(any::<u8>(), 0..1500)).prop_map(|(recipient_id, p)| {
            Frame::Data {
                recipient_id,
                payload: Bytes::from(p),
            }
        }),
        id().prop_map(|recipient_id| Frame::Eof { recipient_id }),
        id().prop_map(|recipient_id| Frame::Close { recipient_id }),
    ]
}

/// What the application does between two pieces of input.
#[derive(Clone, Debug)]
enum App {
    Open,
    AcceptOrRefuse(bool),
    ReadAll,
    Write(u8, u16),
    CloseWrite(u8),
    Close(u8),
    Release(u8),
}

fn app() -> impl Strategy<Value = App> {
    prop_oneof![
        Just(App::Open),
        any::<bool>().prop_map(App::AcceptOrRefuse),
        Just(App::ReadAll),
        (any::<u8>(), 0u16..3000).prop_map(|(c, n)| App::Write(c, n)),
        any::<u8>().prop_map(App::CloseWrite),
        any::<u8>().prop_map(App::Close),
        any::<u8>().prop_map(App::Release),
    ]
}

/// What the peer sends next, relative to the channels that exist: mostly well-formed frames
/// for live channels (so runs reach deep states), sometimes arbitrary frames or bytes.
#[derive(Clone, Debug)]
enum PeerMove {
    Open(u32, u32),
    Confirm(u8, u32, u32),
    Refuse(u8),
    Data(u8, u16),
    Adjust(u8, u32),
    Eof(u8),
    Close(u8),
    Raw(Frame),
}

/// A window or max packet a sane peer might advertise, and now and then an insane one.
fn advertised() -> impl Strategy<Value = u32> {
    prop_oneof![12 => 9u32..16384, 1 => size()]
}

fn peer_move() -> impl Strategy<Value = PeerMove> {
    prop_oneof![
        12 => (advertised(), advertised()).prop_map(|(w, m)| PeerMove::Open(w, m)),
        12 => (any::<u8>(), advertised(), advertised()).prop_map(|(k, w, m)| PeerMove::Confirm(k, w, m)),
        4 => any::<u8>().prop_map(PeerMove::Refuse),
        24 => (any::<u8>(), prop_oneof![30 => 0u16..1024, 1 => 1024u16..1500]).prop_map(|(k, n)| PeerMove::Data(k, n)),
        8 => (any::<u8>(), prop_oneof![9 => 0u32..65536, 1 => size()]).prop_map(|(k, n)| PeerMove::Adjust(k, n)),
        8 => any::<u8>().prop_map(PeerMove::Eof),
        6 => any::<u8>().prop_map(PeerMove::Close),
        1 => frame().prop_map(PeerMove::Raw),
    ]
    .boxed()
}

/// One step: what the peer sends (maybe with a byte corrupted), then what the application does.
#[derive(Clone, Debug)]
struct Step {
    peer: PeerMove,
    corrupt: Option<(usize, u8)>,
    app: App,
}

fn step() -> impl Strategy<Value = Step> {
    (
        peer_move(),
        prop_oneof![60 => Just(None), 1 => (any::<usize>(), any::<u8>()).prop_map(Some)],
        app(),
    )
        .prop_map(|(peer, corrupt, app)| Step { peer, corrupt, app })
}

/// The application side: channels it knows of, and what it does with them.
struct Driver {
    session: Session,
    incoming: Vec<ChannelId>,
    known: Vec<ChannelId>,
    out: Vec<Bytes>,
    /// Channels this side opened that the peer has not answered: (our id).
    opening: Vec<ChannelId>,
    next_peer_id: u32,
    /// Channels the peer sent CLOSE on (it sends nothing more there).
    peer_closed: Vec<ChannelId>,
}

impl Driver {
    fn pick_of(list: &[ChannelId], k: u8) -> Option<ChannelId> {
        (!list.is_empty()).then(|| list[k as usize % list.len()])
    }

    /// The frame the peer sends for `m`, given the channels that exist.
    fn peer_frame(&mut self, m: &PeerMove) -> Option<Frame> {
        let open: Vec<ChannelId> = self
            .known
            .iter()
            .copied()
            .filter(|id| !self.peer_closed.contains(id))
            .collect();
        let mut fresh = || {
            self.next_peer_id += 1;
            self.next_peer_id
        };
        Some(match m {
            PeerMove::Open(window, max_packet) => Frame::Open {
                sender_id: fresh(),
                window: *window,
                max_packet: *max_packet,
            },
            PeerMove::Confirm(k, window, max_packet) => {
                let ours = Self::pick_of(&self.opening, *k)?;
                self.opening.retain(|&o| o != ours);
                Frame::OpenConfirm {
                    recipient_id: ours.get(),
                    sender_id: fresh(),
                    window: *window,
                    max_packet: *max_packet,
                }
            }
            PeerMove::Refuse(k) => {
                let ours = Self::pick_of(&self.opening, *k)?;
                self.opening.retain(|&o| o != ours);
                Frame::OpenFailure {
                    recipient_id: ours.get(),
                }
            }
            PeerMove::Data(k, n) => Frame::Data {
                recipient_id: Self::pick_of(&open, *k)?.get(),
                payload: Bytes::from(vec![1u8; *n as usize]),
            },
            PeerMove::Adjust(k, bytes) => Frame::WindowAdjust {
                recipient_id: Self::pick_of(&open, *k)?.get(),
                bytes: *bytes,
            },
            PeerMove::Eof(k) => Frame::Eof {
                recipient_id: Self::pick_of(&open, *k)?.get(),
            },
            PeerMove::Close(k) => {
                let id = Self::pick_of(&open, *k)?;
                self.peer_closed.push(id);
                Frame::Close {
                    recipient_id: id.get(),
                }
            }
            PeerMove::Raw(f) => f.clone(),
        })
    }

    fn pick(&self, n: u8) -> Option<ChannelId> {
        (!self.known.is_empty()).then(|| self.known[n as usize % self.known.len()])
    }

    fn events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Incoming(id) => self.incoming.push(id),
                Event::OpenStarted(_, id) => self.opening.push(id),
                Event::OpenReply(id)
                    if matches!(
                        self.session.open_status(id),
                        Ok(qtalk_mux_proto::OpenStatus::Confirmed)
                    ) && !self.known.contains(&id) =>
                {
                    self.known.push(id);
                }
                Event::Readable(id) | Event::Writable(id) if !self.known.contains(&id) => {
                    self.known.push(id);
                }
                _ => {}
            }
        }
    }

    fn act(&mut self, app: &App) {
        match *app {
            App::Open => {
                if let Ok(qtalk_mux_proto::OpenStart::Started(id)) = self.session.open() {
                    self.opening.push(id);
                }
            }
            App::AcceptOrRefuse(accept) => {
                if let Some(id) = self.incoming.pop() {
                    if accept {
                        if self.session.accept(id).is_ok() {
                            self.known.push(id);
                        }
                    } else {
                        let _ = self.session.reject(id);
                    }
                }
            }
            App::ReadAll => {
                for &id in &self.known {
                    while let Ok(Some(b)) = self.session.read_chunk(id, 700) {
                        if b.is_empty() {
                            break;
                        }
                    }
                }
            }
            App::Write(c, n) => {
                if let Some(id) = self.pick(c) {
                    let _ = self.session.send(id, &vec![7u8; n as usize]);
                }
            }
            App::CloseWrite(c) => {
                if let Some(id) = self.pick(c) {
                    let _ = self.session.close_write(id);
                }
            }
            App::Close(c) => {
                if let Some(id) = self.pick(c) {
                    let _ = self.session.close(id);
                }
            }
            App::Release(c) => {
                if let Some(id) = self.pick(c) {
                    self.session.release(id);
                    self.known.retain(|&k| k != id);
                }
            }
        }
        // The transport takes everything.
        self.out.clear();
        let n = self.session.poll_transmit(&mut self.out);
        self.session.on_transmitted(n);
    }

    /// Memory held for the peer's data is bounded by the windows granted.
    fn check_bounds(&self) {
        let held: usize = self.known.iter().map(|&id| self.session.buffered(id)).sum();
        let channels = self.known.len() + self.incoming.len();
        assert!(
            held <= channels.max(1) * WINDOW as usize,
            "{held} bytes buffered on {channels} channels"
        );
        assert!(
            self.incoming.len() <= BACKLOG + 1,
            "{} channels waiting for accept",
            self.incoming.len()
        );
        // Everything granted stays within the memory budget, plus the floor window of each
        // channel opened once it was spent.
        let c = config();
        let floor = c.max_channels() * qtalk_mux_proto::FLOOR_WINDOW.min(WINDOW) as usize;
        assert!(
            held <= self.session.reserved()
                && self.session.reserved() <= c.memory_budget() - c.send_buffer() + floor,
            "{held} bytes held, {} reserved",
            self.session.reserved()
        );
        assert!(self.session.channel_count() <= c.max_channels());
        assert!(self.session.opens_waiting() <= c.open_queue());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_frame_stream_is_handled_without_panic_within_bounds(
        steps in prop::collection::vec(step(), 1..80),
        splits in prop::collection::vec(1usize..64, 1..8),
    ) {
        let mut d = Driver {
            session: Session::new(config()),
            incoming: Vec::new(),
            known: Vec::new(),
            out: Vec::new(),
            opening: Vec::new(),
            next_peer_id: 0,
            peer_closed: Vec::new(),
        };
        let mut input = BytesMut::new();
        let mut split = splits.iter().cycle();
        for step in &steps {
            let Some(frame) = d.peer_frame(&step.peer) else {
                d.act(&step.app);
                d.events();
                continue;
            };
            let mut bytes = BytesMut::new();
            frame.encode(&mut bytes);
            if let Some((at, byte)) = step.corrupt {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let mut rest = &bytes[..];
            let mut failed = None;
            while !rest.is_empty() {
                let n = (*split.next().unwrap()).min(rest.len());
                input.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if let Err(e) = d.session.handle_input(&mut input) {
                    failed = Some(e);
                    break;
                }
                // Input waiting to be parsed stays small: payloads are taken as they arrive.
                prop_assert!(input.len() <= 64, "{} bytes of input held", input.len());
                d.events();
                d.check_bounds();
            }
            if let Some(e) = failed {
                // A violation ends the session with an error that says what was wrong.
                prop_assert!(!e.to_string().is_empty());
                d.session.terminate();
                d.act(&App::ReadAll);
                return Ok(());
            }
            d.act(&step.app);
            d.events();
            d.check_bounds();
        }
        // The end of input between frames is clean; inside one, an error.
        let _ = d.session.handle_eof(&input);
    }
}
