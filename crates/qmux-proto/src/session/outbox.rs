//! What waits to be sent: encoded frames in order, and the stream alignment of bulk copies.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{self, Frame, DATA_HEADER_LEN};

/// Payloads handed to [`Session::send_bytes`](super::Session::send_bytes) at least this long
/// are queued without a copy (when they line up with the stream, see [`ALIGN`]).
pub(super) const ZERO_COPY_MIN: usize = 16 * 1024;

/// Payloads handed over without a copy from this size on are lined up by padding frames
/// rather than copied, when [`Config::alignment_padding`](crate::Config::alignment_padding)
/// is on: at most 567 bytes of padding (0.9%), 283 on average.
const PAD_MIN: usize = 64 * 1024;

/// Copies of bulk data line up with the byte stream on this boundary. The transport copies
/// what it is given into its own buffers, which fill in stream order; a copy whose source and
/// destination differ in their low address bits runs slower than one where they agree (on
/// loopback with 256 KiB writes, copying into a lined-up buffer first was the faster of the
/// two in three runs of four). So a large payload
/// is queued as is only when its address agrees with its stream position modulo `ALIGN`,
/// and is otherwise copied into the scratch buffer, which is kept agreeing.
const ALIGN: u64 = 64;

/// Frames not yet handed to the driver.
#[derive(Debug)]
pub(super) struct Outbox {
    /// Frames not yet handed to the driver, in order; `scratch` follows them.
    frames: VecDeque<Bytes>,
    scratch: BytesMut,
    /// Bytes ever moved into `frames`: the stream position of `scratch`'s first byte.
    pushed: u64,
    /// Bytes queued or handed out and not yet reported written.
    unsent: usize,
}

impl Outbox {
    pub(super) fn new() -> Self {
        Outbox {
            frames: VecDeque::new(),
            scratch: BytesMut::with_capacity(64 * 1024),
            pushed: 0,
            unsent: 0,
        }
    }

    /// Queues a frame (a control frame, or DATA copied whole).
    pub(super) fn queue(&mut self, f: Frame) {
        let before = self.scratch.len();
        f.encode(&mut self.scratch);
        self.unsent += self.scratch.len() - before;
    }

    fn flush_scratch(&mut self) {
        if !self.scratch.is_empty() {
            self.pushed += self.scratch.len() as u64;
            self.frames.push_back(self.scratch.split().freeze());
        }
    }

    fn push(&mut self, b: Bytes) {
        self.flush_scratch();
        self.pushed += b.len() as u64;
        self.frames.push_back(b);
    }

    /// Stream position of the next byte queued.
    fn position(&self) -> u64 {
        self.pushed + self.scratch.len() as u64
    }

    /// True when a buffer at `ptr`, sent from stream position `pos`, lines up with it.
    fn lines_up(ptr: *const u8, pos: u64) -> bool {
        (ptr as usize as u64).wrapping_sub(pos) % ALIGN == 0
    }

    /// Queues as many WINDOW_ADJUST frames of 0 bytes for channel `remote` (the peer's id) as
    /// make a payload at `ptr`, sent after its DATA header, line up with its stream position
    /// (see [`Config::alignment_padding`](crate::Config::alignment_padding)). Each frame moves
    /// the stream on by 9 bytes, and 9 is invertible modulo 64 (9 × 57 = 513 = 8 × 64 + 1),
    /// so at most 63 are needed.
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
    /// its stream position (see [`ALIGN`]).
    fn reserve_aligned(&mut self, need: usize) {
        let end = |s: &BytesMut| s.as_ptr().wrapping_add(s.len());
        if self.scratch.capacity() - self.scratch.len() >= need
            && Self::lines_up(end(&self.scratch), self.position())
        {
            return;
        }
        // What is queued goes ahead as it is; the copy starts a lined up buffer.
        self.flush_scratch();
        let pos = self.position();
        self.scratch.reserve(need + ALIGN as usize);
        let skew = (pos.wrapping_sub(self.scratch.as_ptr() as usize as u64) % ALIGN) as usize;
        self.scratch.resize(skew, 0);
        self.scratch.advance(skew);
    }

    /// Queues `data` (already counted against the window) as DATA frames of at most `max`
    /// bytes for channel `remote` (the peer's id), copied.
    pub(super) fn data(&mut self, remote: u32, max: usize, data: &[u8]) {
        let n = data.len();
        let total = n + DATA_HEADER_LEN * n.div_ceil(max);
        if n >= ZERO_COPY_MIN {
            self.reserve_aligned(total);
        } else {
            self.scratch.reserve(total);
        }
        for piece in data.chunks(max) {
            frame::encode_data_header(remote, piece.len() as u32, &mut self.scratch);
            self.scratch.extend_from_slice(piece);
            self.unsent += DATA_HEADER_LEN + piece.len();
        }
    }

    /// Queues the first `n` bytes of `data` (at least [`ZERO_COPY_MIN`], already counted
    /// against the window) as DATA frames of at most `max` bytes, without a copy where they
    /// line up with the stream (`padding`: [`Config::alignment_padding`](crate::Config)).
    pub(super) fn data_bytes(
        &mut self,
        remote: u32,
        max: usize,
        data: &mut Bytes,
        n: usize,
        padding: bool,
    ) {
        let mut left = n;
        while left > 0 {
            let piece = data.split_to(left.min(max));
            left -= piece.len();
            if piece.len() >= PAD_MIN && padding {
                self.pad_to_line_up(remote, piece.as_ptr());
            }
            let copy = piece.len() < ZERO_COPY_MIN
                || !Self::lines_up(piece.as_ptr(), self.position() + DATA_HEADER_LEN as u64);
            if copy && piece.len() >= ZERO_COPY_MIN {
                self.reserve_aligned(DATA_HEADER_LEN + piece.len());
            }
            frame::encode_data_header(remote, piece.len() as u32, &mut self.scratch);
            self.unsent += DATA_HEADER_LEN + piece.len();
            if copy {
                self.scratch.extend_from_slice(&piece);
            } else {
                self.push(piece);
            }
        }
    }

    /// Moves every frame waiting into `out`, in order, and returns their total size.
    pub(super) fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        self.flush_scratch();
        let mut n = 0;
        for b in self.frames.drain(..) {
            n += b.len();
            out.push(b);
        }
        n
    }

    pub(super) fn has_transmit(&self) -> bool {
        !self.frames.is_empty() || !self.scratch.is_empty()
    }

    pub(super) fn on_transmitted(&mut self, n: usize) {
        self.unsent = self.unsent.saturating_sub(n);
    }

    pub(super) fn unsent(&self) -> usize {
        self.unsent
    }

    /// Drops every frame waiting (the session ended).
    pub(super) fn clear(&mut self) {
        self.frames.clear();
        self.scratch.clear();
        self.unsent = 0;
    }
}
