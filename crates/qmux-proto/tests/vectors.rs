//! Conformance of `qmux-proto` with wire recordings of the Go reference (qtalk-go), kept in
//! `tests/vectors` at the workspace root (format: `tests/vectors/README.md`).
//!
//! 1. Every recorded frame decodes from exactly its bytes and re-encodes to the same bytes.
//! 2. Every recorded exchange, in every recorded ordering, replays between two of our
//!    [`Session`]s: each side produces the recorded frames byte for byte through the public API,
//!    and accepts the recorded bytes of the other side.
//! 3. Each side's byte stream decodes into the same frames from arbitrary split points.

mod transcript;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use qtalk_mux_proto::frame::{
    kind_name, DATA_HEADER_LEN, MSG_CLOSE, MSG_DATA, MSG_EOF, MSG_OPEN, MSG_OPEN_CONFIRM,
    MSG_WINDOW_ADJUST,
};
use qtalk_mux_proto::{ChannelId, Config, Event, Frame, OpenStatus, ProtocolError, Session};
use transcript::{
    cli_check_files, comment_fields, display_name, parse_file, top_level_files, variant_files,
    vectors_dir, Line, Side,
};

/// The window and max packet the Go peers advertised in the recordings, and the reference's
/// id allocation (lowest free id, reused at once).
fn go_config() -> Config {
    Config::builder()
        .window(0x4000_0000)
        .max_packet(0x0100_0000)
        .id_reuse_delay(0)
        // The reference has no session budget: enough for every recorded channel's window.
        .memory_budget(usize::MAX)
        .build()
        .expect("valid config")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes a complete (not abbreviated) line: exactly one frame that consumes every byte.
fn decode_exact(line: &Line) -> Result<Frame, String> {
    let at = line.at();
    if let Some(n) = line.abbreviated {
        return Err(format!("{at}: DATA payload abbreviated ({n} bytes)"));
    }
    let mut buf = BytesMut::from(&line.bytes[..]);
    let frame = match Frame::decode(&mut buf, u32::MAX) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(format!("{at}: decode wants more than the line's bytes")),
        Err(e) => return Err(format!("{at}: decode failed: {e}")),
    };
    if !buf.is_empty() {
        return Err(format!(
            "{at}: decode left {} of {} bytes unconsumed",
            buf.len(),
            line.bytes.len()
        ));
    }
    Ok(frame)
}

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out
}

/// The numeric fields the description of `frame` shows, in the order the recordings print them.
fn described_fields(frame: &Frame) -> Vec<(&'static str, u64)> {
    match frame {
        Frame::Open {
            sender_id,
            window,
            max_packet,
        } => vec![
            ("sender", (*sender_id).into()),
            ("window", (*window).into()),
            ("maxpacket", (*max_packet).into()),
        ],
        Frame::OpenConfirm {
            recipient_id,
            sender_id,
            window,
            max_packet,
        } => vec![
            ("channel", (*recipient_id).into()),
            ("sender", (*sender_id).into()),
            ("window", (*window).into()),
            ("maxpacket", (*max_packet).into()),
        ],
        Frame::WindowAdjust {
            recipient_id,
            bytes,
        } => vec![
            ("channel", (*recipient_id).into()),
            ("bytes", (*bytes).into()),
        ],
        Frame::Data {
            recipient_id,
            payload,
        } => vec![
            ("channel", (*recipient_id).into()),
            ("len", payload.len() as u64),
        ],
        Frame::OpenFailure { recipient_id }
        | Frame::Eof { recipient_id }
        | Frame::Close { recipient_id } => vec![("channel", (*recipient_id).into())],
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Every recorded frame decodes and re-encodes to the same bytes.
// ---------------------------------------------------------------------------------------------

fn check_full_line(line: &Line) -> Result<(), String> {
    let at = line.at();
    let bytes = &line.bytes[..];
    // The decoder is incremental: any strict prefix is "need more" and consumes nothing.
    for cut in 0..bytes.len() {
        let mut part = BytesMut::from(&bytes[..cut]);
        match Frame::decode(&mut part, u32::MAX) {
            Ok(None) if part.len() == cut => {}
            other => {
                return Err(format!(
                    "{at}: first {cut} of {} bytes: expected Ok(None) consuming nothing, got \
                     {other:?} with {} bytes left",
                    bytes.len(),
                    part.len()
                ))
            }
        }
    }
    let frame = decode_exact(line)?;
    if frame.kind() != bytes[0] {
        return Err(format!(
            "{at}: type byte {:#04x} decoded as {frame:?}",
            bytes[0]
        ));
    }
    if frame.encoded_len() != bytes.len() {
        return Err(format!(
            "{at}: encoded_len {} but the frame is {} bytes",
            frame.encoded_len(),
            bytes.len()
        ));
    }
    let again = encode(&frame);
    if again[..] != *bytes {
        return Err(format!(
            "{at}: re-encoding {frame:?} gave {} instead of {}",
            hex(&again),
            hex(bytes)
        ));
    }
    if let Some(comment) = &line.comment {
        let (name, fields) = comment_fields(comment);
        if name != kind_name(frame.kind()) {
            return Err(format!(
                "{at}: decoded a {} but the line says {name}",
                kind_name(frame.kind())
            ));
        }
        let want: Vec<(String, u64)> = described_fields(&frame)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        if fields != want {
            return Err(format!(
                "{at}: decoded fields {want:?} but the line says {fields:?}"
            ));
        }
    }
    if let Frame::Data {
        recipient_id,
        payload,
    } = &frame
    {
        // The length limit applies from the header alone and is inclusive.
        let len = payload.len() as u32;
        let mut exact = BytesMut::from(bytes);
        if !matches!(Frame::decode(&mut exact, len), Ok(Some(_))) {
            return Err(format!(
                "{at}: DATA of {len} bytes refused with max_payload {len}"
            ));
        }
        if len > 0 {
            let mut head = BytesMut::from(&bytes[..DATA_HEADER_LEN]);
            let want = ProtocolError::PacketTooLarge {
                channel: *recipient_id,
                len,
                max: len - 1,
            };
            match Frame::decode(&mut head, len - 1) {
                Err(e) if e == want => {}
                other => {
                    return Err(format!(
                        "{at}: header of a {len}-byte DATA with max_payload {}: expected \
                         {want:?}, got {other:?}",
                        len - 1
                    ))
                }
            }
        }
    }
    Ok(())
}

/// A cli_check DATA line whose payload is abbreviated to a prefix: the header must announce
/// `n` bytes, the truncated frame must be incomplete, and the frame completed with filler bytes
/// must decode to that header and prefix and re-encode identically.
fn check_abbreviated_line(line: &Line, n: usize) -> Result<(), String> {
    let at = line.at();
    let b = &line.bytes[..];
    if b.len() < DATA_HEADER_LEN || b[0] != MSG_DATA {
        return Err(format!(
            "{at}: abbreviated line is not a DATA frame: {}",
            hex(b)
        ));
    }
    let recipient = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    let len = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    let prefix = &b[DATA_HEADER_LEN..];
    if len as usize != n || prefix.len() >= n {
        return Err(format!(
            "{at}: length field {len}, abbreviation says {n} bytes, {} bytes shown",
            prefix.len()
        ));
    }
    let mut truncated = BytesMut::from(b);
    match Frame::decode(&mut truncated, u32::MAX) {
        Ok(None) if truncated.len() == b.len() => {}
        other => {
            return Err(format!(
                "{at}: truncated DATA frame: expected Ok(None), got {other:?}"
            ))
        }
    }
    let mut full = b.to_vec();
    full.extend((0..n - prefix.len()).map(|i| i as u8));
    let mut src = BytesMut::from(&full[..]);
    match Frame::decode(&mut src, u32::MAX) {
        Ok(Some(Frame::Data {
            recipient_id,
            payload,
        })) if recipient_id == recipient
            && payload.len() == n
            && payload.starts_with(prefix)
            && src.is_empty() =>
        {
            let again = encode(&Frame::Data {
                recipient_id,
                payload,
            });
            if again[..] != full[..] {
                return Err(format!("{at}: completed DATA frame re-encodes differently"));
            }
            Ok(())
        }
        other => Err(format!(
            "{at}: completed DATA frame (channel {recipient}, {n} bytes) decoded as {other:?}, \
             {} bytes left",
            src.len()
        )),
    }
}

#[test]
fn every_recorded_frame_decodes_and_reencodes_exactly() {
    let mut files = top_level_files();
    files.extend(variant_files());
    let cli = cli_check_files();
    assert_eq!(
        cli.len(),
        4,
        "expected 4 cli_check transcripts, found {cli:?}"
    );
    files.extend(cli);

    let (mut full, mut abbreviated, mut cli_full) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    for path in &files {
        let lines = parse_file(path);
        assert!(!lines.is_empty(), "{}: no frames", display_name(path));
        let is_cli = display_name(path).starts_with("cli_check");
        for line in &lines {
            let result = match line.abbreviated {
                None => {
                    full += 1;
                    cli_full += usize::from(is_cli);
                    check_full_line(line)
                }
                Some(n) => {
                    abbreviated += 1;
                    check_abbreviated_line(line, n)
                }
            };
            if let Err(e) = result {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} recorded frame(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // 13 126 frames in the top-level and variant transcripts, 1 128 in cli_check.
    assert!(full > 14_000, "only {full} complete frames checked");
    assert!(cli_full > 900, "only {cli_full} complete cli_check frames");
    assert!(abbreviated > 10, "only {abbreviated} abbreviated frames");
}

// ---------------------------------------------------------------------------------------------
// 2. Replay of every recorded exchange, in every recorded ordering.
//
// Two of our sessions play the recorded client and server. For each recorded line, the writing
// side produces the frame through the public API (OPEN -> open(), OPEN_CONFIRM -> accept(),
// DATA -> send(), EOF -> close_write(), CLOSE -> close() or the automatic reply to the peer's
// CLOSE; WINDOW_ADJUSTs are not forced, our session picks its own schedule and its own
// WINDOW_ADJUSTs are dropped), and what it transmits must be byte-identical to the line. The
// recorded bytes (recorded WINDOW_ADJUSTs included) then travel to the other side.
//
// Frames are not always delivered at once: a line is the order of the *writes*, and frames cross
// on the wire. For instance in `variants/cbor_error.v1.txt` the client writes CLOSE (line 13) and
// the server then writes DATA on the same channel (line 14): the server had not yet received
// that CLOSE, or it could not have written. And in `variants/cbor_interop_check.v8.txt` the
// client's CLOSE of channel 0 (line 101) crosses the server's (line 96): the client opens its
// next channel as id 1 (line 102) because id 0 is only freed when the peer's CLOSE arrives. So
// each direction is a FIFO of frames in flight, and a frame is delivered only when the receiving
// side needs it to write its next recorded frame (the OPEN or CLOSE that makes the recorded id
// the lowest free one, the OPEN it confirms, the OPEN_CONFIRM of the channel it writes on), or
// at the end. When a side writes CLOSE while the peer's CLOSE for that channel is in flight, the
// CLOSE is either the automatic reply (the peer's CLOSE arrived just before; qtalk-go replies in
// its read loop) or a crossing CLOSE of its own: the replay tries the reply first (so our
// automatic reply is checked) and backtracks to the other reading if the rest of the recording
// then cannot be reproduced.
// ---------------------------------------------------------------------------------------------

/// How the recorded bytes are handed to the receiving session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// Each frame in one `handle_input` call.
    Whole,
    /// One byte per `handle_input` call.
    Bytewise,
}

/// One channel as the application on one side sees it.
#[derive(Debug)]
struct Chan {
    local: u32,
    remote: u32,
    opened_at: String,
    /// Everything read from the channel.
    received: Vec<u8>,
    /// The payloads of the recorded DATA frames toward it.
    expected: Vec<u8>,
    /// A read returned end-of-stream.
    eof_seen: bool,
    /// This side sent CLOSE: it writes nothing more on the channel, and the peer may already
    /// reuse its id for a new channel.
    close_sent: bool,
}

impl Chan {
    fn new(local: u32, remote: u32, at: &str) -> Self {
        Chan {
            local,
            remote,
            opened_at: at.to_string(),
            received: Vec::new(),
            expected: Vec::new(),
            eof_seen: false,
            close_sent: false,
        }
    }
}

/// A frame our session transmitted that has not been matched to a recorded line yet.
#[derive(Debug)]
struct Produced {
    bytes: Bytes,
    /// Produced while handling input (an automatic reply) rather than by an API call.
    auto_reply: bool,
    at: String,
}

/// One of our sessions with the bookkeeping of the application driving it.
struct Peer {
    side: Side,
    sess: Session,
    input: BytesMut,
    /// Recorded frames of the other side in flight toward this one (line indices), in order.
    inbox: VecDeque<usize>,
    /// Open channels by local id.
    chans: BTreeMap<u32, Chan>,
    /// Channels we opened that await the peer's reply.
    opening: BTreeSet<u32>,
    /// Channels the peer opened (local id -> peer's id) not accepted yet.
    incoming: BTreeMap<u32, u32>,
    /// Frames transmitted (WINDOW_ADJUSTs excluded) and not matched yet, in order.
    produced: VecDeque<Produced>,
    /// Recorded frames matched by an automatic reply of our session.
    auto_replies: usize,
    /// Channels released after the CLOSE handshake.
    done: Vec<Chan>,
}

impl Peer {
    fn new(side: Side) -> Self {
        Peer {
            side,
            sess: Session::new(go_config()),
            input: BytesMut::new(),
            inbox: VecDeque::new(),
            chans: BTreeMap::new(),
            opening: BTreeSet::new(),
            incoming: BTreeMap::new(),
            produced: VecDeque::new(),
            auto_replies: 0,
            done: Vec::new(),
        }
    }

    /// The id the next `open()` should get: the lowest one no channel holds (as in qtalk-go).
    fn next_free_id(&self) -> u32 {
        (0..)
            .find(|id| {
                !self.chans.contains_key(id)
                    && !self.opening.contains(id)
                    && !self.incoming.contains_key(id)
            })
            .expect("a free id")
    }

    /// The local id of the channel the peer knows as `remote` that this side may still write
    /// on (it has not sent CLOSE), if any.
    fn open_local(&self, remote: u32) -> Option<u32> {
        self.chans
            .values()
            .find(|c| c.remote == remote && !c.close_sent)
            .map(|c| c.local)
    }

    /// Acts on every pending event as an application would.
    fn events(&mut self, at: &str) -> Result<(), String> {
        let side = self.side;
        while let Some(ev) = self.sess.poll_event() {
            match ev {
                Event::Incoming(id) => {
                    let id = id.get();
                    let remote = self.sess.remote_id(ChannelId::new(id)).ok_or_else(|| {
                        format!("{at}: our {side}: Incoming({id}) but remote_id({id}) is None")
                    })?;
                    if self.chans.contains_key(&id)
                        || self.opening.contains(&id)
                        || self.incoming.insert(id, remote).is_some()
                    {
                        return Err(format!(
                            "{at}: our {side}: Incoming({id}) for an id already in use"
                        ));
                    }
                }
                Event::OpenStarted(..) => {
                    return Err(format!("{at}: our {side}: an open was queued"));
                }
                Event::OpenReply(id) => {
                    let id = id.get();
                    if !self.opening.remove(&id) {
                        return Err(format!(
                            "{at}: our {side}: OpenReply({id}) for a channel not being opened"
                        ));
                    }
                    match self.sess.open_status(ChannelId::new(id)) {
                        Ok(OpenStatus::Confirmed) => {}
                        other => {
                            return Err(format!(
                                "{at}: our {side}: open_status({id}) after OPEN_CONFIRM is \
                                 {other:?}"
                            ))
                        }
                    }
                    let remote = self.sess.remote_id(ChannelId::new(id)).ok_or_else(|| {
                        format!("{at}: our {side}: remote_id({id}) is None after OPEN_CONFIRM")
                    })?;
                    self.chans.insert(id, Chan::new(id, remote, at));
                }
                Event::Readable(id) => self.drain(id.get(), at)?,
                Event::Writable(_) => {}
                other => return Err(format!("{at}: our {side}: unexpected {other:?}")),
            }
        }
        Ok(())
    }

    /// Reads everything buffered on channel `id`.
    fn drain(&mut self, id: u32, at: &str) -> Result<(), String> {
        let side = self.side;
        let ch = self.chans.get_mut(&id).ok_or_else(|| {
            format!("{at}: our {side}: Readable({id}) for a channel that is not open")
        })?;
        loop {
            match self.sess.read_chunk(ChannelId::new(id), usize::MAX) {
                Ok(Some(b)) if b.is_empty() => return Ok(()),
                Ok(Some(b)) => ch.received.extend_from_slice(&b),
                Ok(None) => {
                    ch.eof_seen = true;
                    return Ok(());
                }
                Err(e) => return Err(format!("{at}: our {side}: read_chunk({id}): {e}")),
            }
        }
    }

    /// Takes what the session transmitted and queues its frames, WINDOW_ADJUSTs dropped.
    fn transmit(&mut self, auto_reply: bool, at: &str) -> Result<(), String> {
        let side = self.side;
        let mut out = Vec::new();
        let n = self.sess.poll_transmit(&mut out);
        self.sess.on_transmitted(n);
        let wire = Bytes::from(out.concat());
        if wire.len() != n {
            return Err(format!(
                "{at}: our {side}: poll_transmit returned {n} but handed out {} bytes",
                wire.len()
            ));
        }
        let mut src = BytesMut::from(&wire[..]);
        while !src.is_empty() {
            let start = wire.len() - src.len();
            let frame = match Frame::decode(&mut src, u32::MAX) {
                Ok(Some(f)) => f,
                other => {
                    return Err(format!(
                        "{at}: our {side} transmitted bytes that do not decode ({other:?}): {}",
                        hex(&wire[start..])
                    ))
                }
            };
            if frame.kind() != MSG_WINDOW_ADJUST {
                self.produced.push_back(Produced {
                    bytes: wire.slice(start..wire.len() - src.len()),
                    auto_reply,
                    at: at.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The local id of the channel the peer knows as `remote` that this side may still write on,
    /// checked against the session's `remote_id`.
    fn local_for(&self, remote: u32, at: &str) -> Result<u32, String> {
        let side = self.side;
        let found: Vec<u32> = self
            .chans
            .values()
            .filter(|c| {
                !c.close_sent && self.sess.remote_id(ChannelId::new(c.local)) == Some(remote)
            })
            .map(|c| c.local)
            .collect();
        match found[..] {
            [l] if self.chans[&l].remote == remote => Ok(l),
            [l] => Err(format!(
                "{at}: our {side}: remote_id({l}) is {remote}, but the channel was opened with \
                 peer id {}",
                self.chans[&l].remote
            )),
            [] => Err(format!(
                "{at}: our {side} has no open channel the peer knows as {remote} (open: {:?})",
                self.chans.keys().collect::<Vec<_>>()
            )),
            _ => Err(format!(
                "{at}: our {side}: several open channels map to peer id {remote}: {found:?}"
            )),
        }
    }

    /// Makes the session produce `frame` through the public API, as the Go application did.
    fn produce(&mut self, frame: &Frame, at: &str) -> Result<(), String> {
        let side = self.side;
        let api = |what: String, e: qtalk_mux_proto::ChannelError| {
            format!("{at}: our {side}: {what} failed: {e}")
        };
        match *frame {
            Frame::Open { sender_id, .. } => {
                let id = match self.sess.open().map_err(|e| api("open()".into(), e))? {
                    qtalk_mux_proto::OpenStart::Started(id) => id.get(),
                    queued => return Err(format!("{at}: our {side}: open() {queued:?}")),
                };
                if id != sender_id {
                    return Err(format!(
                        "{at}: our {side}: open() allocated id {id}, Go allocated {sender_id}"
                    ));
                }
                self.opening.insert(id);
            }
            Frame::OpenConfirm {
                recipient_id,
                sender_id,
                ..
            } => {
                match self.incoming.remove(&sender_id) {
                    Some(r) if r == recipient_id => {}
                    Some(r) => {
                        return Err(format!(
                            "{at}: our {side}: Incoming({sender_id}) came from peer id {r}, Go \
                             confirmed peer id {recipient_id}"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "{at}: our {side} saw no Incoming({sender_id}) event to accept \
                             (pending: {:?})",
                            self.incoming
                        ))
                    }
                }
                self.sess
                    .accept(ChannelId::new(sender_id))
                    .map_err(|e| api(format!("accept({sender_id})"), e))?;
                self.chans
                    .insert(sender_id, Chan::new(sender_id, recipient_id, at));
            }
            Frame::OpenFailure { recipient_id } => {
                let id = self
                    .incoming
                    .iter()
                    .find(|&(_, &r)| r == recipient_id)
                    .map(|(&l, _)| l)
                    .ok_or_else(|| {
                        format!("{at}: our {side} has no incoming channel from {recipient_id}")
                    })?;
                self.incoming.remove(&id);
                self.sess
                    .reject(ChannelId::new(id))
                    .map_err(|e| api(format!("reject({id})"), e))?;
            }
            Frame::WindowAdjust { .. } => {} // our session picks its own schedule
            Frame::Data {
                recipient_id,
                ref payload,
            } => {
                let l = self.local_for(recipient_id, at)?;
                let n = self
                    .sess
                    .send(ChannelId::new(l), payload)
                    .map_err(|e| api(format!("send({l}, {} bytes)", payload.len()), e))?;
                if n != payload.len() {
                    return Err(format!(
                        "{at}: our {side}: send({l}) took {n} of {} bytes",
                        payload.len()
                    ));
                }
            }
            Frame::Eof { recipient_id } => {
                let l = self.local_for(recipient_id, at)?;
                self.sess
                    .close_write(ChannelId::new(l))
                    .map_err(|e| api(format!("close_write({l})"), e))?;
            }
            Frame::Close { recipient_id } => {
                // When the peer's CLOSE came first, our session replied with CLOSE while handling
                // it and the channel was released: nothing to do, the reply is already queued.
                if self.open_local(recipient_id).is_some() {
                    let l = self.local_for(recipient_id, at)?;
                    self.sess
                        .close(ChannelId::new(l))
                        .map_err(|e| api(format!("close({l})"), e))?;
                    if let Some(ch) = self.chans.get_mut(&l) {
                        ch.close_sent = true;
                    }
                }
            }
        }
        self.events(at)?;
        self.transmit(false, at)
    }

    /// The recorded non-WINDOW_ADJUST frame `line` must be the next frame we produced.
    fn match_recorded(&mut self, line: &Line) -> Result<(), String> {
        let (at, side) = (line.at(), self.side);
        match self.produced.pop_front() {
            Some(p) if p.bytes[..] == line.bytes[..] => {
                self.auto_replies += usize::from(p.auto_reply);
                Ok(())
            }
            Some(p) => Err(format!(
                "{at}: Go's {side} wrote {}, our {side} produced {}{} (produced at {})",
                hex(&line.bytes),
                hex(&p.bytes),
                if p.auto_reply {
                    " as an automatic reply"
                } else {
                    ""
                },
                p.at
            )),
            None => Err(format!(
                "{at}: Go's {side} wrote {}, our {side} produced nothing",
                hex(&line.bytes)
            )),
        }
    }

    /// Hands the recorded bytes of the other side's frame to this session.
    fn feed(&mut self, line: &Line, frame: &Frame, mode: Feed) -> Result<(), String> {
        let (at, side) = (line.at(), self.side);
        let pieces: Vec<&[u8]> = match mode {
            Feed::Whole => vec![&line.bytes[..]],
            Feed::Bytewise => line.bytes.chunks(1).collect(),
        };
        for piece in pieces {
            self.input.extend_from_slice(piece);
            self.sess.handle_input(&mut self.input).map_err(|e| {
                format!(
                    "{at}: our {side} refused {} written by Go's {}: {e}",
                    hex(&line.bytes),
                    side.other()
                )
            })?;
            self.events(&at)?;
        }
        if !self.input.is_empty() || self.sess.payload_remaining() != 0 {
            return Err(format!(
                "{at}: our {side} did not consume the whole frame ({} bytes left, {} payload \
                 bytes awaited)",
                self.input.len(),
                self.sess.payload_remaining()
            ));
        }
        match *frame {
            Frame::Data {
                recipient_id,
                ref payload,
            } => {
                let ch = self.chans.get_mut(&recipient_id).ok_or_else(|| {
                    format!("{at}: DATA toward channel {recipient_id}, not open on our {side}")
                })?;
                ch.expected.extend_from_slice(payload);
            }
            Frame::Eof { recipient_id } => {
                let ch = self.chans.get(&recipient_id).ok_or_else(|| {
                    format!("{at}: EOF toward channel {recipient_id}, not open on our {side}")
                })?;
                if !ch.eof_seen {
                    return Err(format!(
                        "{at}: our {side}: channel {recipient_id} does not read end-of-stream \
                         after EOF"
                    ));
                }
            }
            Frame::Close { recipient_id } => {
                // Like the Go reference, free the id once the peer's CLOSE is in.
                let ch = self.chans.remove(&recipient_id).ok_or_else(|| {
                    format!("{at}: CLOSE toward channel {recipient_id}, not open on our {side}")
                })?;
                if !self.sess.is_closed_by_peer(ChannelId::new(recipient_id)) {
                    return Err(format!(
                        "{at}: our {side}: is_closed_by_peer({recipient_id}) is false after CLOSE"
                    ));
                }
                if !ch.eof_seen {
                    return Err(format!(
                        "{at}: our {side}: channel {recipient_id} does not read end-of-stream \
                         after CLOSE"
                    ));
                }
                self.done.push(ch);
                self.sess.release(ChannelId::new(recipient_id));
                self.events(&at)?;
            }
            _ => {}
        }
        self.transmit(true, &at)
    }

    /// Everything produced was recorded and every channel got its data.
    fn finish(&mut self, file: &str) -> Result<(), String> {
        let at = format!("{file}:end");
        let side = self.side;
        self.events(&at)?;
        self.transmit(true, &at)?;
        if let Some(p) = self.produced.front() {
            return Err(format!(
                "{at}: our {side} produced {} at {}, which Go's {side} never wrote ({} unmatched)",
                hex(&p.bytes),
                p.at,
                self.produced.len()
            ));
        }
        if !self.opening.is_empty() || !self.incoming.is_empty() {
            return Err(format!(
                "{at}: our {side}: opens never answered {:?}, never accepted {:?}",
                self.opening, self.incoming
            ));
        }
        for ch in self.done.iter().chain(self.chans.values()) {
            if ch.received != ch.expected {
                return Err(format!(
                    "{at}: our {side}: channel {} (peer id {}, opened at {}) read {} but the \
                     recorded DATA toward it carried {}",
                    ch.local,
                    ch.remote,
                    ch.opened_at,
                    hex(&ch.received),
                    hex(&ch.expected)
                ));
            }
        }
        if !self.chans.is_empty() || self.sess.channel_count() != 0 {
            return Err(format!(
                "{at}: our {side}: channels still open at the end: {:?} (channel_count {})",
                self.chans.keys().collect::<Vec<_>>(),
                self.sess.channel_count()
            ));
        }
        Ok(())
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

/// One replay of a transcript under one delivery schedule.
struct Replay<'a> {
    name: &'a str,
    lines: &'a [Line],
    frames: &'a [Frame],
    mode: Feed,
    /// Client, server.
    peers: [Peer; 2],
    /// Choices to make at CLOSE lines that may be automatic replies (true: reply); beyond its
    /// end the reply is chosen.
    script: &'a [bool],
    /// Choices made so far.
    decisions: Vec<bool>,
    /// A failure no other delivery schedule can avoid.
    fatal: Option<String>,
}

impl Replay<'_> {
    /// Delivers the oldest frame in flight toward peer `to`; false when none is.
    fn deliver(&mut self, to: usize) -> Result<bool, String> {
        let Some(i) = self.peers[to].inbox.pop_front() else {
            return Ok(false);
        };
        self.peers[to].feed(&self.lines[i], &self.frames[i], self.mode)?;
        Ok(true)
    }

    /// Delivers frames toward peer `to` until `ready` holds.
    fn deliver_until(
        &mut self,
        to: usize,
        at: &str,
        what: &str,
        ready: impl Fn(&Peer) -> bool,
    ) -> Result<(), String> {
        while !ready(&self.peers[to]) {
            if !self.deliver(to)? {
                return Err(format!(
                    "{at}: our {}: {what}, with every frame of the peer delivered",
                    self.peers[to].side
                ));
            }
        }
        Ok(())
    }

    /// Replays recorded line `i`.
    fn step(&mut self, i: usize) -> Result<(), String> {
        let (lines, frames) = (self.lines, self.frames);
        let (line, frame) = (&lines[i], &frames[i]);
        let at = line.at();
        let w = side_index(line.side);
        match *frame {
            Frame::Open { sender_id, .. } => self.deliver_until(
                w,
                &at,
                &format!("id {sender_id} never becomes the lowest free id"),
                |p| p.next_free_id() == sender_id,
            )?,
            Frame::OpenConfirm { sender_id, .. } => {
                self.deliver_until(w, &at, &format!("no Incoming({sender_id})"), |p| {
                    p.incoming.contains_key(&sender_id)
                })?
            }
            Frame::OpenFailure { recipient_id } => self.deliver_until(
                w,
                &at,
                &format!("no OPEN from peer id {recipient_id}"),
                |p| p.incoming.values().any(|&r| r == recipient_id),
            )?,
            Frame::Data { recipient_id, .. } | Frame::Eof { recipient_id } => self.deliver_until(
                w,
                &at,
                &format!("no open channel with peer id {recipient_id}"),
                |p| p.open_local(recipient_id).is_some(),
            )?,
            Frame::Close { recipient_id } => match self.peers[w].open_local(recipient_id) {
                Some(local) => {
                    // Is the peer's CLOSE of this channel in flight? Then this CLOSE may be
                    // the automatic reply to it.
                    let peer = &self.peers[w];
                    let pending = peer.inbox.iter().position(
                        |&k| matches!(frames[k], Frame::Close { recipient_id: r } if r == local),
                    );
                    if let Some(k) = pending {
                        let reply = self
                            .script
                            .get(self.decisions.len())
                            .copied()
                            .unwrap_or(true);
                        self.decisions.push(reply);
                        if reply {
                            let peer_close = lines[self.peers[w].inbox[k]].at();
                            for _ in 0..=k {
                                self.deliver(w)?;
                            }
                            // Having sent no CLOSE, the session must reply to the peer's.
                            let replied = self.peers[w]
                                .produced
                                .iter()
                                .any(|p| p.auto_reply && p.bytes[..] == line.bytes[..]);
                            if !replied {
                                let side = self.peers[w].side;
                                let e = format!(
                                    "{at}: our {side} did not reply {} to the CLOSE written at \
                                     {peer_close}",
                                    hex(&line.bytes),
                                );
                                self.fatal = Some(e.clone());
                                return Err(e);
                            }
                        }
                    }
                }
                None => self.deliver_until(
                    w,
                    &at,
                    &format!("no open channel with peer id {recipient_id} and no CLOSE reply"),
                    |p| {
                        p.open_local(recipient_id).is_some()
                            || p.produced.iter().any(|q| q.bytes[..] == line.bytes[..])
                    },
                )?,
            },
            Frame::WindowAdjust { .. } => {}
        }
        if frame.kind() != MSG_WINDOW_ADJUST {
            self.peers[w].produce(frame, &at)?;
            self.peers[w].match_recorded(line)?;
        }
        self.peers[1 - w].inbox.push_back(i);
        Ok(())
    }

    /// Delivers everything still in flight and checks both sides.
    fn finish(&mut self) -> Result<(), String> {
        while self.deliver(0)? | self.deliver(1)? {}
        self.peers[0].finish(self.name)?;
        self.peers[1].finish(self.name)
    }
}

/// What a successful replay exercised.
#[derive(Debug, Default)]
struct ReplayStats {
    frames: usize,
    auto_replies: usize,
    schedules_tried: usize,
}

/// Delivery schedules tried per transcript before giving up.
const MAX_SCHEDULES: usize = 64;

/// Replays one transcript, searching for a delivery schedule consistent with the recording.
/// On failure, reports the error of the schedule that got furthest.
fn replay(path: &Path, mode: Feed) -> Result<ReplayStats, String> {
    replay_lines(&display_name(path), &parse_file(path), mode)
}

/// [`replay`] of the frames `lines` of the transcript `name`.
fn replay_lines(name: &str, lines: &[Line], mode: Feed) -> Result<ReplayStats, String> {
    if lines.is_empty() {
        return Err(format!("{name}: no frames"));
    }
    let frames = lines
        .iter()
        .map(decode_exact)
        .collect::<Result<Vec<_>, _>>()?;
    let mut script = Vec::new();
    let mut best: Option<(usize, String)> = None;
    for tried in 1..=MAX_SCHEDULES {
        let mut r = Replay {
            name,
            lines,
            frames: &frames,
            mode,
            peers: [Peer::new(Side::Client), Peer::new(Side::Server)],
            script: &script,
            decisions: Vec::new(),
            fatal: None,
        };
        let mut reached = 0;
        let mut result = Ok(());
        for i in 0..lines.len() {
            reached = i;
            result = r.step(i);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            reached = lines.len();
            result = r.finish();
        }
        match result {
            Ok(()) => {
                return Ok(ReplayStats {
                    frames: lines.len(),
                    auto_replies: r.peers[0].auto_replies + r.peers[1].auto_replies,
                    schedules_tried: tried,
                })
            }
            Err(e) if r.fatal.is_some() => return Err(e),
            Err(e) => {
                if best.as_ref().is_none_or(|(b, _)| reached > *b) {
                    best = Some((reached, e));
                }
            }
        }
        // Next schedule: revisit the latest CLOSE read as a reply as a crossing CLOSE instead.
        let Some(j) = r.decisions.iter().rposition(|&reply| reply) else {
            break;
        };
        script = r.decisions[..j].to_vec();
        script.push(false);
    }
    let (_, e) = best.expect("at least one schedule tried");
    Err(format!(
        "{e}\n    (no delivery schedule reproduces {name}; this is the error of the schedule that \
         got furthest)"
    ))
}

/// Files in `dir` (not directories), minus the names in `except`.
fn files_present(dir: &Path, except: &[&str]) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| !except.contains(&&*p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// Per scenario (`<codec>_<scenario>`), the number of distinct orderings SUMMARY.txt lists.
fn summary_orderings() -> BTreeMap<String, usize> {
    let path = vectors_dir().join("SUMMARY.txt");
    let text = fs::read_to_string(path).expect("read SUMMARY.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut words = l.split_whitespace();
            let scenario = words.next().unwrap().to_string();
            let n = words
                .find_map(|w| w.strip_prefix("distinct_orderings="))
                .unwrap_or_else(|| panic!("SUMMARY.txt: no distinct_orderings in {l:?}"))
                .parse()
                .unwrap_or_else(|e| panic!("SUMMARY.txt: {l:?}: {e}"));
            (scenario, n)
        })
        .collect()
}

#[test]
fn replay_every_recorded_exchange_in_every_ordering() {
    let mut files = top_level_files();
    files.extend(variant_files());

    // Every transcript present is replayed, and SUMMARY.txt accounts for every one of them.
    let present = files_present(
        &vectors_dir(),
        &["encodings.txt", "SUMMARY.txt", "README.md"],
    )
    .len()
        + files_present(&vectors_dir().join("variants"), &["README.md"]).len();
    assert_eq!(
        files.len(),
        present,
        "transcript files found ({}) differ from files present ({present})",
        files.len()
    );
    let orderings = summary_orderings();
    assert_eq!(
        orderings.values().sum::<usize>(),
        files.len(),
        "SUMMARY.txt lists {orderings:?} orderings but {} transcripts are present",
        files.len()
    );
    for (scenario, &n) in &orderings {
        let count = files
            .iter()
            .filter(|p| {
                let f = p.file_name().unwrap().to_string_lossy();
                f == format!("{scenario}.txt")
                    || (f.starts_with(&format!("{scenario}.v")) && f.ends_with(".txt"))
            })
            .count();
        assert_eq!(
            count, n,
            "{scenario}: SUMMARY.txt lists {n} orderings, {count} files"
        );
    }

    let mut failures = Vec::new();
    for mode in [Feed::Whole, Feed::Bytewise] {
        let mut replayed = 0usize;
        let mut total = ReplayStats::default();
        for path in &files {
            match replay(path, mode) {
                Ok(stats) => {
                    replayed += 1;
                    total.frames += stats.frames;
                    total.auto_replies += stats.auto_replies;
                    total.schedules_tried += stats.schedules_tried;
                }
                Err(e) => failures.push(format!("[{mode:?} feed] {e}")),
            }
        }
        println!(
            "{mode:?} feed: {replayed} of {} transcripts replayed, {} frames, {} automatic CLOSE \
             replies matched, {} delivery schedules tried",
            files.len(),
            total.frames,
            total.auto_replies,
            total.schedules_tried
        );
        if replayed == present {
            assert!(
                total.frames > 13_000,
                "{mode:?}: only {} frames",
                total.frames
            );
            assert!(
                total.auto_replies > 100,
                "{mode:?}: only {} automatic CLOSE replies exercised",
                total.auto_replies
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} replays failed:\n{}",
        failures.len(),
        2 * present,
        failures.join("\n")
    );
}

/// The replay notices recordings our sessions do not reproduce: each alteration of a real
/// transcript below makes it fail, naming the altered line.
#[test]
fn replay_rejects_altered_recordings() {
    let path = vectors_dir().join("json_bytes_stream.txt");
    let name = display_name(&path);
    let lines = parse_file(&path);
    for mode in [Feed::Whole, Feed::Bytewise] {
        if let Err(e) = replay_lines(&name, &lines, mode) {
            panic!("the unaltered transcript must replay: {e}");
        }
    }
    let first = |side: Side, kind: u8| {
        lines
            .iter()
            .position(|l| l.side == side && l.bytes[0] == kind)
            .unwrap_or_else(|| panic!("{name}: no {side} frame of type {kind:#04x}"))
    };
    let last = |side: Side, kind: u8| {
        lines
            .iter()
            .rposition(|l| l.side == side && l.bytes[0] == kind)
            .unwrap_or_else(|| panic!("{name}: no {side} frame of type {kind:#04x}"))
    };
    let at = |i: usize| lines[i].at();
    let mut cases: Vec<(&str, Vec<Line>, String)> = Vec::new();

    let mut v = lines.clone();
    let i = first(Side::Client, MSG_OPEN);
    v[i].bytes[5] ^= 1; // window
    cases.push(("window advertised in OPEN", v, at(i)));

    let mut v = lines.clone();
    let i = first(Side::Client, MSG_OPEN);
    v[i].bytes[4] = 1; // sender id
    cases.push(("id allocated by OPEN", v, at(i)));

    let mut v = lines.clone();
    let i = first(Side::Server, MSG_OPEN_CONFIRM);
    v[i].bytes[8] = 3; // sender id
    cases.push(("id allocated by OPEN_CONFIRM", v, at(i)));

    let mut v = lines.clone();
    let i = first(Side::Server, MSG_DATA);
    v[i].bytes[4] = 5; // recipient id
    cases.push(("DATA on an unknown channel", v, at(i)));

    let mut v = lines.clone();
    let i = first(Side::Client, MSG_EOF);
    assert_eq!(v[i - 1].bytes[0], MSG_DATA, "{}: DATA before EOF", at(i));
    v.swap(i - 1, i);
    cases.push(("DATA after EOF", v, at(i - 1)));

    let mut v = lines.clone();
    let i = first(Side::Client, MSG_EOF);
    v[i].bytes[4] = 7; // recipient id
    cases.push(("EOF on an unknown channel", v, at(i)));

    let mut v = lines.clone();
    let i = last(Side::Client, MSG_CLOSE);
    v.remove(i);
    cases.push(("missing CLOSE reply", v, format!("{name}:end")));

    for (what, altered, location) in &cases {
        for mode in [Feed::Whole, Feed::Bytewise] {
            match replay_lines(&name, altered, mode) {
                Ok(_) => panic!("{location}: altered {what}, yet the replay ({mode:?}) passed"),
                Err(e) => assert!(
                    e.starts_with(&format!("{location}: ")),
                    "{location}: altered {what}: the replay ({mode:?}) failed elsewhere: {e}"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Each direction's byte stream decodes into the same frames from arbitrary split points.
// ---------------------------------------------------------------------------------------------

#[test]
fn byte_streams_decode_from_arbitrary_split_points() {
    let files = top_level_files();
    assert_eq!(files.len(), 16, "expected 16 top-level transcripts");
    let mut checked = 0usize;
    for path in &files {
        let name = display_name(path);
        let lines = parse_file(path);
        for side in [Side::Client, Side::Server] {
            let mine: Vec<&Line> = lines.iter().filter(|l| l.side == side).collect();
            let want: Vec<Frame> = mine
                .iter()
                .map(|l| decode_exact(l).unwrap_or_else(|e| panic!("{e}")))
                .collect();
            let stream: Vec<u8> = mine.iter().flat_map(|l| l.bytes.iter().copied()).collect();
            assert!(!want.is_empty(), "{name}: no frames written by {side}");
            for step in [1, 2, 3, 7, 13, 64, 1000, stream.len()] {
                let mut buf = BytesMut::new();
                let mut got = Vec::new();
                for piece in stream.chunks(step) {
                    buf.extend_from_slice(piece);
                    loop {
                        match Frame::decode(&mut buf, u32::MAX) {
                            Ok(Some(f)) => got.push(f),
                            Ok(None) => break,
                            Err(e) => panic!(
                                "{name}: {side} stream fed {step} bytes at a time: frame {} \
                                 (recorded at {}) failed to decode: {e}",
                                got.len(),
                                mine.get(got.len()).map_or("?".into(), |l| l.at())
                            ),
                        }
                    }
                }
                assert!(
                    buf.is_empty(),
                    "{name}: {side} stream fed {step} bytes at a time: {} bytes left undecoded",
                    buf.len()
                );
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g,
                        w,
                        "{}: {side} stream fed {step} bytes at a time: frame {i} differs",
                        mine[i].at()
                    );
                }
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{name}: {side} stream fed {step} bytes at a time: frame count differs"
                );
                checked += got.len();
            }
        }
    }
    assert!(checked > 6_000, "only {checked} frames checked");
}
