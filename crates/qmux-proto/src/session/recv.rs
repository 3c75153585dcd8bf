//! A channel's receive buffer: payloads shared with the transport's read buffer when large,
//! small ones coalesced into blocks of their own.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Payloads at most this long are copied into a channel's own buffer instead of sharing the
/// transport read buffer, so that small chunks never pin large read buffers. A longer piece
/// is shared when it is at least half of what is left of the buffer, or when the rest of its
/// frame's payload would fill at least half of it (so the buffer holds mostly that one
/// payload, whatever the reads made of it); otherwise it is copied too.
pub(super) const SHARE_MIN: usize = 4096;

/// Copied payloads of a channel go into blocks of at most this size (or less, when the
/// channel's window is smaller).
const TAIL_BLOCK: usize = 64 * 1024;

/// A channel's first block of copied payloads; each next one doubles, up to [`TAIL_BLOCK`]. A
/// call's few small messages then cost a small allocation, not a 64 KiB one.
const FIRST_BLOCK: usize = 1024;

/// Received data of one channel, oldest first.
#[derive(Debug, Default)]
pub(super) struct RecvBuffer {
    /// Received data, oldest first; `tail` follows it.
    chunks: VecDeque<Bytes>,
    /// Small payloads coalesced behind `chunks`.
    tail: BytesMut,
    /// Size of the last block allocated for `tail` (0: none yet).
    tail_block: u32,
    len: usize,
}

impl RecvBuffer {
    /// Bytes buffered.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends a payload: kept as it is with `share`, else copied into the tail block.
    /// `window` is what the peer may still send (a new block is never larger than that needs).
    pub(super) fn push(&mut self, chunk: Bytes, share: bool, window: u32) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        if share {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(chunk);
        } else {
            let spare = self.tail.capacity() - self.tail.len();
            if spare < chunk.len() {
                // A new block rather than a doubling buffer: what is copied for a channel
                // costs at most one partly filled block more than the data, and never more
                // than the peer may still send.
                if !self.tail.is_empty() {
                    self.chunks.push_back(self.tail.split().freeze());
                }
                let most = chunk.len() + window as usize;
                let next = match self.tail_block as usize {
                    0 => FIRST_BLOCK,
                    last => (last * 2).min(TAIL_BLOCK),
                };
                let block = next.min(most).max(chunk.len());
                self.tail_block = block as u32;
                self.tail = BytesMut::with_capacity(block);
            }
            self.tail.extend_from_slice(&chunk);
        }
    }

    /// Drops everything buffered, and the memory.
    pub(super) fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.tail = BytesMut::new();
        self.len = 0;
    }

    /// Takes up to `max` bytes from the front.
    pub(super) fn take_front(&mut self, max: usize) -> Bytes {
        let out = if let Some(front) = self.chunks.front_mut() {
            if front.len() <= max {
                self.chunks.pop_front().unwrap_or_default()
            } else {
                front.split_to(max)
            }
        } else {
            let n = max.min(self.tail.len());
            self.tail.split_to(n).freeze()
        };
        self.len -= out.len();
        out
    }

    /// Copies as much as fits into `dst` from the front; returns how much.
    pub(super) fn copy_front(&mut self, dst: &mut [u8]) -> usize {
        let mut n = 0;
        while n < dst.len() && self.len > 0 {
            let src: &[u8] = match self.chunks.front() {
                Some(c) => c,
                None => &self.tail,
            };
            let k = src.len().min(dst.len() - n);
            dst[n..n + k].copy_from_slice(&src[..k]);
            n += k;
            match self.chunks.front_mut() {
                Some(c) if c.len() == k => {
                    self.chunks.pop_front();
                }
                Some(c) => c.advance(k),
                None => self.tail.advance(k),
            }
            self.len -= k;
        }
        n
    }
}
