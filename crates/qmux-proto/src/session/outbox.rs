//! What waits to be sent, and in which order it leaves.
//!
//! Control frames (window adjusts, opens and their replies, and the EOF and CLOSE of channels
//! with no data waiting) go first, in the order they were queued. DATA waits in one queue per
//! channel, and the channels take turns, one frame each, so that a channel with a little to
//! send never waits behind the megabytes of another; a channel's EOF and CLOSE follow its
//! last queued frame. The order is decided when frames are handed out
//! ([`Outbox::poll_transmit`]), and so is the place of every byte in the stream, which large
//! payloads are lined up with (see [`ALIGN`]).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::ids::ChannelId;
use crate::frame::{self, Frame, DATA_HEADER_LEN};

/// Payloads at least this long go out without a copy when they line up with the stream (see
/// [`ALIGN`]); shorter ones are copied behind their header.
const ZERO_COPY_MIN: usize = 16 * 1024;

/// Payloads handed out without a copy from this size on are lined up by padding frames
/// rather than copied, when [`Config::alignment_padding`](crate::Config::alignment_padding)
/// is on: at most 567 bytes of padding (0.9%), 283 on average.
const PAD_MIN: usize = 64 * 1024;

/// Copies of bulk data line up with the byte stream on this boundary. The transport copies
/// what it is given into its own buffers, which fill in stream order; a copy whose source and
/// destination differ in their low address bits runs slower than one where they agree (on
/// loopback with 256 KiB writes, copying into a lined-up buffer first was the faster of the
/// two in three runs of four). So a large payload
/// is handed out as is only when its address agrees with its stream position modulo `ALIGN`,
/// and is otherwise padded into place or copied into the scratch buffer, which is kept
/// agreeing.
const ALIGN: u64 = 64;

/// Largest DATA frame queued, whatever the peer's max packet (the reference accepts 16 MiB):
/// the unit in which channels take turns.
pub(super) const MAX_FRAME: usize = 256 * 1024;

/// A channel that had nothing queued and queues a frame of at most this size takes its turn
/// before the channels with data waiting (it sends little: a call's message, say); a larger
/// frame joins the end of the turn order.
const SPARSE: usize = 16 * 1024;

/// While other channels have had data to send lately, large frames are handed out in slices
/// of at most this size, and a batch holds at most one slice: what a new frame can wait
/// behind stays short. A slice goes out as it is, lined up with the stream or not: lining up
/// every slice would cost up to 63 padding frames each.
const SLICE: usize = 32 * 1024;

/// Batches handed out with only one channel's data waiting before frames go out whole again.
const QUIET_BATCHES: u32 = 64;

/// Part of the send buffer kept for channels with nothing queued: a call's small write never
/// waits for another channel's bulk data to drain. An eighth of the send buffer.
const RESERVE_SHARE: usize = 8;

/// Copies and encoded frames are made in blocks of this size (or the size of the piece, when
/// larger), which the pieces handed out share.
const BLOCK: usize = 64 * 1024;

/// Makes room for `need` more bytes in `buf`, a block at a time (its old block taken again
/// when everything handed out of it was dropped: written, for the driver's part).
fn ensure(buf: &mut BytesMut, need: usize) {
    if buf.capacity() - buf.len() < need {
        buf.reserve(need.max(BLOCK));
    }
}

/// One channel's queued DATA, and the EOF and CLOSE that follow it.
#[derive(Debug)]
struct ChannelQueue {
    id: ChannelId,
    /// The peer's id for the channel.
    remote: u32,
    /// Payloads, oldest first, each one DATA frame.
    frames: VecDeque<Bytes>,
    eof: bool,
    close: bool,
}

/// Frames not yet handed to the driver.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Control frames waiting, encoded; at hand-out, the DATA headers and copied payloads
    /// are appended behind them.
    scratch: BytesMut,
    /// Channels with DATA waiting that had nothing queued and sent little: they go first.
    fresh: VecDeque<ChannelQueue>,
    /// The other channels with DATA waiting, in their turn order.
    queues: VecDeque<ChannelQueue>,
    /// Copies of what [`Outbox::data`] was given, split off per frame.
    copies: BytesMut,
    /// Bytes handed out so far: the stream position of `scratch`'s first byte.
    pushed: u64,
    /// Bytes queued or handed out and not yet reported written.
    unsent: usize,
    /// Batches handed out in a row with one channel's data alone waiting.
    quiet: u32,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            scratch: BytesMut::new(),
            fresh: VecDeque::new(),
            queues: VecDeque::new(),
            copies: BytesMut::new(),
            pushed: 0,
            unsent: 0,
            quiet: QUIET_BATCHES,
        }
    }

    /// Queues a control frame (it leaves before any DATA).
    pub(super) fn queue(&mut self, f: Frame) {
        ensure(&mut self.scratch, f.encoded_len());
        let before = self.scratch.len();
        f.encode(&mut self.scratch);
        self.unsent += self.scratch.len() - before;
    }

    fn queue_of(&mut self, id: ChannelId) -> Option<&mut ChannelQueue> {
        let fresh = self.fresh.iter_mut();
        fresh
            .chain(self.queues.iter_mut().rev())
            .find(|q| q.id == id)
    }

    fn is_queued(&self, id: ChannelId) -> bool {
        self.fresh.iter().chain(&self.queues).any(|q| q.id == id)
    }

    /// Bytes a write on channel `id` may queue now, besides its window: what is left of the
    /// send buffer `cap`, and for a channel with nothing queued, of the part of it kept for
    /// such channels.
    pub(super) fn room(&self, id: ChannelId, cap: usize) -> usize {
        let room = cap.saturating_sub(self.unsent);
        if self.is_queued(id) {
            return room;
        }
        let reserve = cap / RESERVE_SHARE;
        room.max((cap + reserve).saturating_sub(self.unsent).min(reserve))
    }

    /// Queues `payload` (already counted against the window) as one DATA frame for channel
    /// `id`, whose peer's id is `remote`.
    fn push(&mut self, id: ChannelId, remote: u32, payload: Bytes) {
        self.unsent += DATA_HEADER_LEN + payload.len();
        if let Some(q) = self.queue_of(id) {
            q.frames.push_back(payload);
            return;
        }
        let sparse = payload.len() <= SPARSE;
        let q = ChannelQueue {
            id,
            remote,
            frames: VecDeque::from([payload]),
            eof: false,
            close: false,
        };
        if sparse {
            self.fresh.push_back(q);
        } else {
            self.queues.push_back(q);
        }
    }

    /// Queues a copy of `data` (already counted against the window) as DATA frames of at
    /// most `max` bytes. With nothing else queued, large copies are placed to line up with
    /// the stream position they will most likely be handed out at (see [`ALIGN`]).
    pub(super) fn data(&mut self, id: ChannelId, remote: u32, max: usize, data: &[u8]) {
        let piece_max = max.min(MAX_FRAME);
        let alone = self.fresh.is_empty() && self.queues.is_empty();
        let pieces = data.len().div_ceil(piece_max.max(1));
        ensure(&mut self.copies, data.len() + pieces * ALIGN as usize);
        let mut at = self.position();
        for piece in data.chunks(piece_max) {
            at += DATA_HEADER_LEN as u64;
            if alone && piece.len() >= ZERO_COPY_MIN {
                ensure(&mut self.copies, ALIGN as usize + piece.len());
                let end = self.copies.as_ptr() as usize as u64 + self.copies.len() as u64;
                let skew = (at.wrapping_sub(end) % ALIGN) as usize;
                self.copies.resize(self.copies.len() + skew, 0);
                self.copies.advance(skew);
            }
            at += piece.len() as u64;
            self.copies.extend_from_slice(piece);
            let copy = self.copies.split().freeze();
            self.push(id, remote, copy);
        }
    }

    /// Queues the first `n` bytes of `data` (already counted against the window) as DATA
    /// frames of at most `max` bytes, without a copy.
    pub(super) fn data_bytes(
        &mut self,
        id: ChannelId,
        remote: u32,
        max: usize,
        data: &mut Bytes,
        n: usize,
    ) {
        let mut left = n;
        while left > 0 {
            let piece = data.split_to(left.min(max).min(MAX_FRAME));
            left -= piece.len();
            self.push(id, remote, piece);
        }
    }

    /// Queues EOF (or CLOSE) for channel `id`: behind its queued DATA, else at once.
    pub(super) fn end(&mut self, id: ChannelId, f: Frame) {
        let close = matches!(f, Frame::Close { .. });
        match self.queue_of(id) {
            Some(q) => {
                let n = f.encoded_len();
                if close {
                    q.close = true;
                } else {
                    q.eof = true;
                }
                self.unsent += n;
            }
            None => self.queue(f),
        }
    }

    /// The channel's id is given up while frames of it wait: they go ahead of everything
    /// else, as they are (the peer closed the channel; they must not reach the id's next
    /// channel).
    pub(super) fn flush_channel(&mut self, id: ChannelId) {
        let q = match self.fresh.iter().position(|q| q.id == id) {
            Some(i) => self.fresh.remove(i),
            None => match self.queues.iter().position(|q| q.id == id) {
                Some(i) => self.queues.remove(i),
                None => None,
            },
        };
        let Some(q) = q else {
            return;
        };
        for payload in &q.frames {
            ensure(&mut self.scratch, DATA_HEADER_LEN + payload.len());
            frame::encode_data_header(q.remote, payload.len() as u32, &mut self.scratch);
            self.scratch.extend_from_slice(payload);
        }
        Self::encode_end(&q, &mut self.scratch);
    }

    fn encode_end(q: &ChannelQueue, dst: &mut BytesMut) {
        let recipient_id = q.remote;
        ensure(dst, 2 * 5);
        if q.eof {
            Frame::Eof { recipient_id }.encode(dst);
        }
        if q.close {
            Frame::Close { recipient_id }.encode(dst);
        }
    }

    fn flush_scratch(&mut self, out: &mut Vec<Bytes>) -> usize {
        if self.scratch.is_empty() {
            return 0;
        }
        let n = self.scratch.len();
        self.pushed += n as u64;
        out.push(self.scratch.split().freeze());
        n
    }

    /// Stream position of the next byte.
    fn position(&self) -> u64 {
        self.pushed + self.scratch.len() as u64
    }

    /// True when a buffer at `ptr`, sent from stream position `pos`, lines up with it.
    fn lines_up(ptr: *const u8, pos: u64) -> bool {
        (ptr as usize as u64).wrapping_sub(pos) % ALIGN == 0
    }

    /// Appends as many WINDOW_ADJUST frames of 0 bytes for channel `remote` (the peer's id)
    /// as make a payload at `ptr`, sent after its DATA header, line up with its stream
    /// position. Each frame moves the stream on by 9 bytes, and 9 is invertible modulo 64
    /// (9 × 57 = 513 = 8 × 64 + 1), so at most 63 are needed.
    fn pad_to_line_up(&mut self, remote: u32, ptr: *const u8) {
        let pos = self.position() + DATA_HEADER_LEN as u64;
        let skew = (ptr as usize as u64).wrapping_sub(pos) % ALIGN;
        for _ in 0..skew * 57 % ALIGN {
            self.queue(Frame::WindowAdjust {
                recipient_id: remote,
                bytes: 0,
            });
        }
    }

    /// Makes room for `need` more bytes in the scratch buffer, its next byte lined up with
    /// its stream position (what is in it is handed out first).
    fn reserve_aligned(&mut self, need: usize, out: &mut Vec<Bytes>) -> usize {
        let end = |s: &BytesMut| s.as_ptr().wrapping_add(s.len());
        if self.scratch.capacity() - self.scratch.len() >= need
            && Self::lines_up(end(&self.scratch), self.position())
        {
            return 0;
        }
        let n = self.flush_scratch(out);
        let pos = self.position();
        self.scratch.reserve(need + ALIGN as usize);
        let skew = (pos.wrapping_sub(self.scratch.as_ptr() as usize as u64) % ALIGN) as usize;
        self.scratch.resize(skew, 0);
        self.scratch.advance(skew);
        n
    }

    /// Hands out one DATA frame; returns the bytes moved into `out`. With `align`, a large
    /// payload goes out lined up with the stream (padded with `padding`, else copied);
    /// without, as it is.
    fn emit(
        &mut self,
        remote: u32,
        payload: Bytes,
        padding: bool,
        align: bool,
        out: &mut Vec<Bytes>,
    ) -> usize {
        let len = payload.len();
        let mut n = 0;
        if len >= PAD_MIN && padding {
            self.pad_to_line_up(remote, payload.as_ptr());
        }
        let lined_up =
            !align || Self::lines_up(payload.as_ptr(), self.position() + DATA_HEADER_LEN as u64);
        if len >= ZERO_COPY_MIN && lined_up {
            ensure(&mut self.scratch, DATA_HEADER_LEN);
            frame::encode_data_header(remote, len as u32, &mut self.scratch);
            n += self.flush_scratch(out);
            self.pushed += len as u64;
            out.push(payload);
            return n + len;
        }
        if len >= ZERO_COPY_MIN {
            n += self.reserve_aligned(DATA_HEADER_LEN + len, out);
        } else {
            ensure(&mut self.scratch, DATA_HEADER_LEN + len);
        }
        frame::encode_data_header(remote, len as u32, &mut self.scratch);
        self.scratch.extend_from_slice(&payload);
        n
    }

    /// Moves frames waiting into `out`, in the order they leave: control frames first, then
    /// one DATA frame of each channel in turn (those that sent little first, see [`SPARSE`]),
    /// until at least `max` bytes were moved or none are left; while other channels were
    /// busy lately, in slices and one slice a batch (see [`SLICE`]). Returns the bytes moved.
    /// `padding`: line large payloads up by padding (see
    /// [`Config::alignment_padding`](crate::Config::alignment_padding)).
    pub(super) fn poll_transmit(
        &mut self,
        out: &mut Vec<Bytes>,
        max: usize,
        padding: bool,
    ) -> usize {
        if !self.fresh.is_empty() || self.queues.len() > 1 {
            self.quiet = 0;
        } else {
            self.quiet = self.quiet.saturating_add(1);
        }
        let contended = self.quiet < QUIET_BATCHES;
        let max = if contended { max.min(SLICE) } else { max };
        let mut n = 0;
        while n + self.scratch.len() < max {
            let Some(mut q) = self.fresh.pop_front().or_else(|| self.queues.pop_front()) else {
                break;
            };
            let Some(mut payload) = q.frames.pop_front() else {
                Self::encode_end(&q, &mut self.scratch);
                continue;
            };
            if contended && payload.len() > SLICE {
                let rest = payload.split_off(SLICE);
                q.frames.push_front(rest);
                n += self.emit(q.remote, payload, false, false, out);
            } else {
                n += self.emit(q.remote, payload, padding, true, out);
            }
            if q.frames.is_empty() {
                Self::encode_end(&q, &mut self.scratch);
            } else {
                self.queues.push_back(q);
            }
        }
        n + self.flush_scratch(out)
    }

    pub(super) fn has_transmit(&self) -> bool {
        !self.scratch.is_empty() || !self.fresh.is_empty() || !self.queues.is_empty()
    }

    pub(super) fn on_transmitted(&mut self, n: usize) {
        self.unsent = self.unsent.saturating_sub(n);
    }

    pub(super) fn unsent(&self) -> usize {
        self.unsent
    }

    /// Drops every frame waiting (the session ended).
    pub(super) fn clear(&mut self) {
        self.fresh.clear();
        self.queues.clear();
        self.scratch.clear();
        self.copies = BytesMut::new();
        self.unsent = 0;
    }
}
