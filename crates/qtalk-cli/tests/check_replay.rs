//! Our interop service and our checker held to the Go reference's bytes.
//!
//! `tests/vectors/check` holds recordings of the reference's whole check sequence (its
//! `qtalk check` against its interop service, both sides qtalk-go), both codecs, in several
//! orderings: every frame either side wrote (format: `tests/vectors/check/README.md`). Each
//! test here puts one of our peers in the place of one recorded side, over an in-memory
//! stream, and plays the other side's recorded frames to it:
//!
//! - as the server, our interop service (`interop::service`) answers the recorded checker;
//! - as the checker, our `check::run` (with the recordings' `Bytes` payloads) talks to the
//!   recorded interop service.
//!
//! Every frame our side writes must be the recorded one, byte for byte, with the freedoms the
//! protocol gives a sender and nothing more:
//! - WINDOW_ADJUST is ours to schedule (ours are not compared; the recorded ones are played);
//! - a channel's DATA may be cut into frames differently: its payload bytes, in order, must be
//!   the recorded ones, and its EOF and CLOSE must come after exactly the recorded bytes;
//! - channels may interleave differently; on one channel the order is the recorded one.
//!
//! OPEN, OPEN_CONFIRM (ids, window, max packet), every rpc frame (headers and values in either
//! codec), every raw byte, EOF and CLOSE are compared exactly. The played side's frames go out
//! in their recorded order, each as late as our side lets it (a frame is sent only when our side
//! cannot write the next recorded frame without it), so that every recorded ordering is one our
//! side can be held to. The runtime's clock is paused: "our side cannot go on" is "every task
//! is idle", with no wall-clock wait.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use qtalk::codec::{Cbor, Codec, Json};
use qtalk::rpc::{Options, Peer};
use qtalk_cli::{check, interop};
use qtalk_mux::{Config, Session};
use qtalk_mux_proto::Frame;
use tokio::io::{AsyncRead, AsyncWriteExt, DuplexStream, ReadBuf};

/// The window and max packet the reference advertises, and its id allocation (lowest free
/// id, reused at once).
fn go_config() -> Config {
    Config::builder()
        .window(0x4000_0000)
        .max_packet(0x0100_0000)
        .id_reuse_delay(0)
        .memory_budget(usize::MAX)
        .build()
        .expect("valid config")
}

/// Our rpc options for the replay: no spare channel opened ahead of the next call (the
/// reference opens a channel per call, when the call is made).
fn rpc_options() -> Options {
    Options::builder().spare_channels(0).build().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The recordings.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

struct Line {
    at: String,
    side: Side,
    frame: Frame,
    bytes: Bytes,
}

fn check_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/check"
    ))
}

/// Every recording of `codec`: the most frequent ordering, then the variants.
fn recordings(codec: &str) -> Vec<PathBuf> {
    let mut files = vec![check_dir().join(format!("{codec}_check.txt"))];
    let mut variants: Vec<PathBuf> = fs::read_dir(check_dir().join("variants"))
        .expect("tests/vectors/check/variants")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{codec}_check.v")))
        })
        .collect();
    variants.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_str().unwrap().to_string();
        name.trim_start_matches(&format!("{codec}_check.v"))
            .trim_end_matches(".txt")
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    files.extend(variants);
    files
}

/// Decodes one token: hex, or `seq(FIRST,LEN)` (LEN bytes counting up from FIRST, mod 256).
fn token(tok: &str, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(args) = tok.strip_prefix("seq(").and_then(|t| t.strip_suffix(')')) {
        let (first, len) = args.split_once(',').ok_or("seq(FIRST,LEN)")?;
        let first: u8 = first.parse().map_err(|e| format!("seq first: {e}"))?;
        let len: usize = len.parse().map_err(|e| format!("seq len: {e}"))?;
        out.extend((0..len).map(|k| first.wrapping_add(k as u8)));
        return Ok(());
    }
    if !tok.len().is_multiple_of(2) {
        return Err(format!("odd hex token {tok:?}"));
    }
    for i in (0..tok.len()).step_by(2) {
        let byte = u8::from_str_radix(&tok[i..i + 2], 16).map_err(|e| format!("{tok:?}: {e}"))?;
        out.push(byte);
    }
    Ok(())
}

fn parse(path: &Path) -> (Vec<Line>, Vec<String>) {
    let name = path
        .strip_prefix(check_dir())
        .unwrap_or(path)
        .display()
        .to_string();
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut lines = Vec::new();
    let mut result = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{name}:{}", n + 1);
        if let Some(seen) = raw.strip_prefix("# result seen by client: ") {
            result = seen.split(" | ").map(str::to_string).collect();
            continue;
        }
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let data = raw.split('#').next().unwrap_or_default();
        let mut toks = data.split_whitespace();
        let side = match toks.next() {
            Some("C>") => Side::Client,
            Some("S>") => Side::Server,
            other => panic!("{at}: bad side {other:?}"),
        };
        let mut bytes = Vec::new();
        for tok in toks {
            token(tok, &mut bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = Frame::decode(&mut buf, u32::MAX)
            .unwrap_or_else(|e| panic!("{at}: {e}"))
            .unwrap_or_else(|| panic!("{at}: incomplete frame"));
        assert!(buf.is_empty(), "{at}: bytes after the frame");
        lines.push(Line {
            at,
            side,
            frame,
            bytes: Bytes::from(bytes),
        });
    }
    assert!(!lines.is_empty(), "{name}: no frames");
    assert_eq!(result.len(), 15, "{name}: the result line names 15 checks");
    (lines, result)
}

// ---------------------------------------------------------------------------------------------
// What our side wrote, per channel.

/// One of our frames on a channel, in the order written.
enum Item {
    /// OPEN_CONFIRM, OPEN_FAILURE, EOF or CLOSE: its bytes.
    Control(Bytes),
    /// DATA payload bytes not yet matched.
    Data(Bytes),
}

#[derive(Default)]
struct Written {
    /// Our OPENs, in order.
    opens: VecDeque<Bytes>,
    /// Everything else, by recipient id (the played side's id for the channel).
    channels: HashMap<u32, VecDeque<Item>>,
    frames: usize,
    /// EOFs we wrote right before a CLOSE where the recorded side wrote none.
    extra_eofs: usize,
    /// Our id for each channel, by the id the recorded side chose for it (ids are each side's
    /// own choice: the reference takes the lowest id free at that moment, which depends on
    /// when CLOSE frames crossed).
    ids: HashMap<u32, u32>,
    /// Channels where our id differed from the recorded one.
    other_ids: usize,
}

impl Written {
    fn push(&mut self, frame: Frame) {
        self.frames += 1;
        let mut bytes = BytesMut::new();
        match frame {
            Frame::WindowAdjust { .. } => {}
            Frame::Open { .. } => {
                frame.encode(&mut bytes);
                self.opens.push_back(bytes.freeze());
            }
            Frame::Data {
                recipient_id,
                payload,
            } => {
                if !payload.is_empty() {
                    self.channels
                        .entry(recipient_id)
                        .or_default()
                        .push_back(Item::Data(payload));
                }
            }
            other => {
                let id = other.recipient_id().expect("a recipient");
                other.encode(&mut bytes);
                self.channels
                    .entry(id)
                    .or_default()
                    .push_back(Item::Control(bytes.freeze()));
            }
        }
    }

    /// Takes `want` (a recorded frame of our side) from what we wrote; `None` when we have not
    /// written it (yet), `Some(Err)` when we wrote something else in its place.
    fn take(&mut self, want: &Frame, bytes: &Bytes) -> Option<Result<(), String>> {
        if let Frame::Open { .. } = want {
            let got = self.opens.pop_front()?;
            return Some(self.same_but_id(&got, bytes, 1));
        }
        let id = want.recipient_id().expect("a recipient");
        let queue = self.channels.entry(id).or_default();
        match want {
            Frame::Data { payload, .. } => {
                // The recorded payload must be the next bytes we sent on the channel, however
                // our frames cut them.
                let have: usize = queue
                    .iter()
                    .map_while(|i| match i {
                        Item::Data(b) => Some(b.len()),
                        Item::Control(_) => None,
                    })
                    .sum();
                if have < payload.len() {
                    return match queue.get(
                        queue
                            .iter()
                            .take_while(|i| matches!(i, Item::Data(_)))
                            .count(),
                    ) {
                        Some(Item::Control(c)) => Some(Err(format!(
                            "we wrote {} after {have} of the {} payload bytes recorded here",
                            hex(c),
                            payload.len()
                        ))),
                        _ => None,
                    };
                }
                let mut rest = &payload[..];
                while !rest.is_empty() {
                    let Some(Item::Data(b)) = queue.front_mut() else {
                        unreachable!("counted above")
                    };
                    let n = b.len().min(rest.len());
                    if b[..n] != rest[..n] {
                        let at = payload.len() - rest.len();
                        return Some(Err(format!(
                            "payload differs at byte {at}: we wrote {}, recorded {}",
                            hex(&b[..n.min(48)]),
                            hex(&rest[..n.min(48)])
                        )));
                    }
                    rest = &rest[n..];
                    if n == b.len() {
                        queue.pop_front();
                    } else {
                        *b = b.slice(n..);
                    }
                }
                Some(Ok(()))
            }
            _ => match queue.pop_front()? {
                // The one deliberate difference: our continued calls end their side with EOF
                // before CLOSE, where the reference closes without an EOF (a peer whose reads
                // end only on EOF, as qtalk-js's do, would otherwise wait forever).
                Item::Control(got)
                    if matches!(want, Frame::Close { .. })
                        && got[0] == qtalk_mux_proto::frame::MSG_EOF
                        && got[1..] == bytes[1..] =>
                {
                    self.extra_eofs += 1;
                    match queue.pop_front() {
                        Some(Item::Control(close)) => Some(same(&close, bytes)),
                        Some(item) => {
                            queue.push_front(item);
                            Some(Err(format!(
                                "we wrote EOF and then more payload where the recording has {}",
                                hex(bytes)
                            )))
                        }
                        None => {
                            queue.push_front(Item::Control(got));
                            self.extra_eofs -= 1;
                            None
                        }
                    }
                }
                Item::Control(got) if matches!(want, Frame::OpenConfirm { .. }) => {
                    Some(self.same_but_id(&got, bytes, 5))
                }
                Item::Control(got) => Some(same(&got, bytes)),
                Item::Data(b) => Some(Err(format!(
                    "we wrote {} more payload bytes ({}…) where the recording has {}",
                    b.len(),
                    hex(&b[..b.len().min(32)]),
                    hex(bytes)
                ))),
            },
        }
    }

    /// Compares an OPEN or OPEN_CONFIRM of ours with the recorded one, but for our own id at
    /// byte `at`, which it notes for the recorded side's frames to come.
    fn same_but_id(&mut self, got: &[u8], want: &[u8], at: usize) -> Result<(), String> {
        if got.len() != want.len() || got[0] != want[0] {
            return same(got, want);
        }
        let mut masked = want.to_vec();
        masked[at..at + 4].copy_from_slice(&got[at..at + 4]);
        same(got, &masked)?;
        let id = |b: &[u8]| u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let (recorded, ours) = (id(want), id(got));
        self.ids.insert(recorded, ours);
        self.other_ids += usize::from(recorded != ours);
        Ok(())
    }

    /// A recorded frame of the played side, addressed to our id for its channel.
    fn addressed(&self, line: &Line) -> Bytes {
        match line.frame.recipient_id().and_then(|r| self.ids.get(&r)) {
            Some(&ours) if line.bytes[1..5] != ours.to_be_bytes() => {
                let mut b = line.bytes.to_vec();
                b[1..5].copy_from_slice(&ours.to_be_bytes());
                Bytes::from(b)
            }
            _ => line.bytes.clone(),
        }
    }

    /// What we wrote that no recorded frame took.
    fn leftover(&self) -> Vec<String> {
        let mut left: Vec<String> = self.opens.iter().map(|b| hex(b)).collect();
        for (id, queue) in &self.channels {
            for item in queue {
                left.push(match item {
                    Item::Control(b) => hex(b),
                    Item::Data(b) => format!("{} payload bytes on channel {id}", b.len()),
                });
            }
        }
        left
    }
}

fn same(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("we wrote {}, recorded {}", hex(got), hex(want)))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// The replay.

/// The played side's end of the stream to our session.
struct Wire {
    io: DuplexStream,
    inbound: BytesMut,
    written: Written,
}

impl Wire {
    /// Lets our side run until every task is idle, then takes what it wrote.
    async fn settle(&mut self) -> Result<(), String> {
        // The clock is paused: it moves to this timer only once no task can run.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut chunk = [0u8; 64 * 1024];
            let mut buf = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.io).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    self.inbound.extend_from_slice(buf.filled())
                }
                Poll::Ready(Err(e)) => return Err(format!("reading our side: {e}")),
                _ => break,
            }
        }
        while let Some(frame) =
            Frame::decode(&mut self.inbound, u32::MAX).map_err(|e| format!("our frame: {e}"))?
        {
            self.written.push(frame);
        }
        Ok(())
    }
}

/// When the played side's frames reach our side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schedule {
    /// Each as soon as it was written: our side has every frame the recording shows before the
    /// one it must write next (no latency).
    Eager,
    /// Each as late as possible: only when our side cannot write its next recorded frame
    /// without it (our side always runs ahead of the wire).
    Lazy,
}

/// Plays the `played` side of `lines` to our peer on the other end of `wire`.
async fn replay(
    lines: &[Line],
    played: Side,
    schedule: Schedule,
    wire: &mut Wire,
) -> Result<(), String> {
    let mut pending: VecDeque<&Line> = VecDeque::new();
    let mut compared = 0;
    for line in lines {
        if line.side == played {
            if schedule == Schedule::Eager {
                let bytes = wire.written.addressed(line);
                wire.io
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("{}: writing to our side: {e}", line.at))?;
            } else {
                pending.push_back(line);
            }
            continue;
        }
        if let Frame::WindowAdjust { .. } = line.frame {
            continue;
        }
        loop {
            wire.settle().await?;
            match wire.written.take(&line.frame, &line.bytes) {
                Some(Ok(())) => break,
                Some(Err(e)) => return Err(format!("{}: {e}", line.at)),
                None => {}
            }
            let Some(next) = pending.pop_front() else {
                return Err(format!(
                    "{}: our side never wrote {}: it is idle and every recorded frame before \
                     this one was played",
                    line.at,
                    hex(&line.bytes[..line.bytes.len().min(64)])
                ));
            };
            let bytes = wire.written.addressed(next);
            wire.io
                .write_all(&bytes)
                .await
                .map_err(|e| format!("{}: writing to our side: {e}", next.at))?;
        }
        compared += 1;
    }
    for line in pending {
        let bytes = wire.written.addressed(line);
        wire.io
            .write_all(&bytes)
            .await
            .map_err(|e| format!("{}: writing to our side: {e}", line.at))?;
    }
    wire.settle().await?;
    let left = wire.written.leftover();
    if !left.is_empty() {
        return Err(format!(
            "our side wrote frames the recording does not have: {}",
            left.join(", ")
        ));
    }
    assert!(compared > 100, "only {compared} frames of ours compared");
    Ok(())
}

fn codec_of(name: &str) -> Arc<dyn Codec> {
    match name {
        "json" => Arc::new(Json),
        _ => Arc::new(Cbor),
    }
}

/// Our interop service in the server's place.
async fn replay_server(
    lines: &[Line],
    codec: &str,
    schedule: Schedule,
) -> Result<(usize, usize), String> {
    let (ours, theirs) = tokio::io::duplex(64 << 20);
    let session = Session::new(ours, go_config());
    let faults = interop::Faults::new();
    let peer = Peer::with_options(session, codec_of(codec), rpc_options())
        .handler(interop::service(faults.clone()));
    peer.respond();
    let mut wire = Wire {
        io: theirs,
        inbound: BytesMut::new(),
        written: Written::default(),
    };
    replay(lines, Side::Client, schedule, &mut wire).await?;
    if let Some(fault) = faults.first() {
        return Err(format!("our interop service reported: {fault}"));
    }
    Ok((wire.written.extra_eofs, wire.written.other_ids))
}

/// Our checker in the client's place.
async fn replay_checker(
    lines: &[Line],
    result: &[String],
    codec: &str,
    schedule: Schedule,
) -> Result<(usize, usize), String> {
    let (ours, theirs) = tokio::io::duplex(64 << 20);
    let session = Session::new(ours, go_config());
    let peer =
        Peer::with_options(session, codec_of(codec), rpc_options()).handler(interop::callbacks());
    peer.respond();
    let options = check::Options {
        fill: check::Fill::Sequence,
        timeout: Duration::from_secs(3600),
        ..Default::default()
    };
    let run = tokio::spawn(async move {
        let mut out = Vec::new();
        let res = check::run(peer.caller(), &options, &mut out).await;
        (res, String::from_utf8(out).expect("utf-8"))
    });
    let mut wire = Wire {
        io: theirs,
        inbound: BytesMut::new(),
        written: Written::default(),
    };
    replay(lines, Side::Server, schedule, &mut wire).await?;
    let (res, out) = run.await.map_err(|e| format!("check task: {e}"))?;
    res.map_err(|e| format!("our check failed: {e}"))?;
    let printed: Vec<&str> = out.lines().collect();
    if printed != result {
        return Err(format!(
            "our check printed {printed:?}, the reference {result:?}"
        ));
    }
    Ok((wire.written.extra_eofs, wire.written.other_ids))
}

/// Replays every recording of `codec` with our `role`; each must pass under one of the
/// schedules. Returns how many passed under each.
async fn replay_all(codec: &str, role: &str) {
    let files = recordings(codec);
    assert!(files.len() >= 5, "{codec}: only {} recordings", files.len());
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for path in &files {
        let (lines, result) = parse(path);
        let mut errors = Vec::new();
        for schedule in [Schedule::Eager, Schedule::Lazy] {
            let res = match role {
                "server" => replay_server(&lines, codec, schedule).await,
                _ => replay_checker(&lines, &result, codec, schedule).await,
            };
            match res {
                Ok((extra_eofs, other_ids)) => {
                    passed.push((schedule, extra_eofs, other_ids));
                    errors.clear();
                    break;
                }
                Err(e) => errors.push(format!("{schedule:?}: {e}")),
            }
        }
        if !errors.is_empty() {
            failures.push(errors.join("\n    "));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {codec} recordings failed with our {role} under every schedule:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    // (schedule, EOFs before CLOSE, channels where our id was not the reference's) per recording.
    eprintln!(
        "{codec} {role}: {} recordings passed: {passed:?}",
        files.len()
    );
}

#[tokio::test(start_paused = true)]
async fn our_interop_service_answers_the_reference_checker_byte_for_byte_json() {
    replay_all("json", "server").await;
}

#[tokio::test(start_paused = true)]
async fn our_interop_service_answers_the_reference_checker_byte_for_byte_cbor() {
    replay_all("cbor", "server").await;
}

#[tokio::test(start_paused = true)]
async fn our_checker_runs_the_reference_sequence_byte_for_byte_json() {
    replay_all("json", "checker").await;
}

#[tokio::test(start_paused = true)]
async fn our_checker_runs_the_reference_sequence_byte_for_byte_cbor() {
    replay_all("cbor", "checker").await;
}

/// The replay can fail: one byte changed in a frame our side must write, or one frame of ours
/// taken away, fails it under both schedules.
#[tokio::test(start_paused = true)]
async fn replay_rejects_altered_recordings() {
    let (lines, result) = parse(&check_dir().join("json_check.txt"));
    let is = |l: &Line, side: Side, kind: u8| l.side == side && l.bytes[0] == kind;
    let data = qtalk_mux_proto::frame::MSG_DATA;
    let eof = qtalk_mux_proto::frame::MSG_EOF;
    let close = qtalk_mux_proto::frame::MSG_CLOSE;
    let mut cases: Vec<(&str, Side, Vec<Line>)> = Vec::new();
    for (what, side, kind, skip) in [
        ("a byte of the server's first DATA", Side::Server, data, 0),
        ("a byte of the checker's 12th DATA", Side::Client, data, 11),
    ] {
        let mut altered: Vec<Line> = lines.iter().map(clone_line).collect();
        let line = altered
            .iter_mut()
            .filter(|l| is(l, side, kind))
            .nth(skip)
            .expect("such a line");
        let mut b = line.bytes.to_vec();
        let last = b.len() - 2;
        b[last] ^= 0x20;
        line.frame = Frame::decode(&mut BytesMut::from(&b[..]), u32::MAX)
            .expect("a frame")
            .expect("whole");
        line.bytes = Bytes::from(b);
        cases.push((what, side, altered));
    }
    for (what, side, kind) in [
        ("the server's first CLOSE taken away", Side::Server, close),
        (
            "the checker's first EOF taken away, with its CLOSE",
            Side::Client,
            eof,
        ),
    ] {
        let mut altered: Vec<Line> = lines.iter().map(clone_line).collect();
        let i = altered
            .iter()
            .position(|l| is(l, side, kind))
            .expect("such a line");
        let removed = altered.remove(i);
        if kind == eof {
            // An EOF right before CLOSE is the one allowed difference: take the CLOSE too.
            let j = altered[i..]
                .iter()
                .position(|l| is(l, side, close) && l.bytes[1..] == removed.bytes[1..])
                .expect("its CLOSE");
            altered.remove(i + j);
        }
        cases.push((what, side, altered));
    }

    for (what, ours, altered) in cases {
        for schedule in [Schedule::Eager, Schedule::Lazy] {
            let res = match ours {
                Side::Server => replay_server(&altered, "json", schedule).await,
                Side::Client => replay_checker(&altered, &result, "json", schedule).await,
            };
            assert!(res.is_err(), "{what}, {schedule:?}: the replay passed");
        }
    }
}

fn clone_line(l: &Line) -> Line {
    Line {
        at: l.at.clone(),
        side: l.side,
        frame: l.frame.clone(),
        bytes: l.bytes.clone(),
    }
}
