//! Receive buffers of the reader task, used again once the channels have consumed what was
//! handed to them.
//!
//! The reader hands received DATA to channels as slices of its read buffer, without a copy,
//! so a buffer is free again only when every slice of it has been read and dropped. A fresh
//! allocation per large payload costs page faults on every read (the allocator returns freed
//! blocks of that size to the system and takes new ones): 400,000 faults per 4 GiB received
//! on loopback, against 6,000 with reuse. So the reader keeps the last few buffers it filled
//! and, when it needs another, takes one whose slices are all gone.

use std::collections::VecDeque;

use bytes::BytesMut;

/// The reader's buffers waiting to be free again.
pub(crate) struct Recycler {
    /// Bytes of allocations that may be kept (0: none, every buffer is new).
    budget: usize,
    /// Bytes of the allocations kept now.
    kept_bytes: usize,
    /// Each with the size of its whole allocation.
    kept: VecDeque<(BytesMut, usize)>,
    /// A buffer was needed since the last [`Recycler::idle`] check.
    used: bool,
    /// The size of the allocation behind the reader's current buffer (0: not known).
    current: usize,
}

impl Recycler {
    /// A recycler keeping allocations of up to `budget` bytes in all (0: none).
    pub(crate) fn new(budget: usize) -> Self {
        Recycler {
            budget,
            kept_bytes: 0,
            kept: VecDeque::new(),
            used: false,
            current: 0,
        }
    }

    /// Replaces the empty `buf` with a buffer of exactly `need` bytes of room: a kept one that
    /// is free again (of an allocation at most twice `need`, so that what a channel holds of
    /// it is at least half of it), else a new one. `buf` is kept in its place.
    pub(crate) fn replace(&mut self, buf: &mut BytesMut, need: usize) {
        debug_assert!(buf.is_empty());
        self.used = true;
        // The most recently filled first: its memory is the likeliest to be in cache.
        let found = self.kept.iter_mut().rposition(|(b, alloc)| {
            (need..=need.saturating_mul(2)).contains(alloc) && b.try_reclaim(*alloc)
        });
        let (mut next, alloc) = match found.and_then(|i| self.kept.remove(i)) {
            Some(kept) => {
                self.kept_bytes -= kept.1;
                kept
            }
            None => {
                let alloc = need.next_power_of_two();
                (BytesMut::with_capacity(alloc), alloc)
            }
        };
        // Room for `need` exactly: the rest of the allocation stays unused until it comes back.
        drop(next.split_off(need));
        let old = std::mem::replace(buf, next);
        let old_alloc = std::mem::replace(&mut self.current, alloc);
        if old_alloc == 0 || old_alloc > self.budget {
            return;
        }
        while self.kept_bytes + old_alloc > self.budget {
            let Some((_, n)) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= n;
        }
        self.kept_bytes += old_alloc;
        self.kept.push_back((old, old_alloc));
    }

    /// The reader's buffer was grown in place or moved by `BytesMut::reserve`: its allocation
    /// is not known any more and it will not be kept.
    pub(crate) fn forget(&mut self) {
        self.current = 0;
    }

    /// Takes back the reader's empty `buf` while it waits for input, leaving it with none: one
    /// of at most `small` bytes is freed, a larger one kept for reuse (within the budget).
    pub(crate) fn release(&mut self, buf: &mut BytesMut, small: usize) {
        debug_assert!(buf.is_empty());
        let old = std::mem::take(buf);
        let alloc = std::mem::replace(&mut self.current, 0);
        if alloc <= small || alloc > self.budget {
            return;
        }
        while self.kept_bytes + alloc > self.budget {
            let Some((_, n)) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= n;
        }
        self.kept_bytes += alloc;
        self.kept.push_back((old, alloc));
    }

    /// True while buffers are kept (the reader then checks back for idleness).
    pub(crate) fn holds(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Called at intervals while buffers are kept: frees them all when none was needed since
    /// the last call, so a session that stopped moving bulk data holds none.
    pub(crate) fn idle(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.kept.clear();
            self.kept_bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_its_slices_are_dropped() {
        let mut r = Recycler::new(8 << 20);
        let mut buf = BytesMut::new();
        r.replace(&mut buf, 200 * 1024);
        let first = buf.as_ptr();
        assert_eq!(buf.capacity(), 200 * 1024);
        buf.resize(200 * 1024, 7);
        let chunk = buf.split().freeze();
        // The slice is still held: a new buffer.
        r.replace(&mut buf, 200 * 1024);
        assert_ne!(buf.as_ptr(), first);
        buf.resize(100, 1);
        let other = buf.split().freeze();
        drop(chunk);
        // The first buffer is free again and is used again, from its start.
        r.replace(&mut buf, 150 * 1024);
        assert_eq!(buf.as_ptr(), first);
        assert_eq!(buf.capacity(), 150 * 1024);
        drop(other);
    }

    #[test]
    fn nothing_much_larger_than_asked_is_reused() {
        let mut r = Recycler::new(8 << 20);
        let mut buf = BytesMut::new();
        r.replace(&mut buf, 1 << 20);
        let big = buf.as_ptr();
        r.replace(&mut buf, 20 * 1024);
        r.replace(&mut buf, 20 * 1024);
        assert_ne!(buf.as_ptr(), big);
        assert_eq!(buf.capacity(), 20 * 1024);
    }

    #[test]
    fn a_forgotten_buffer_is_not_kept() {
        let mut r = Recycler::new(8 << 20);
        let mut buf = BytesMut::new();
        r.replace(&mut buf, 64 * 1024);
        r.forget();
        r.replace(&mut buf, 64 * 1024);
        assert!(!r.holds());
    }

    #[test]
    fn what_is_kept_stays_within_the_budget() {
        let mut r = Recycler::new(600 * 1024);
        let mut buf = BytesMut::new();
        let mut held = Vec::new();
        for _ in 0..6 {
            r.replace(&mut buf, 256 * 1024);
            buf.resize(256 * 1024, 0);
            held.push(buf.split().freeze());
        }
        assert_eq!(r.kept_bytes, 512 * 1024);
        assert_eq!(r.kept.len(), 2);
        let mut none = Recycler::new(0);
        none.replace(&mut buf, 1024);
        none.replace(&mut buf, 1024);
        assert!(!none.holds());
    }

    #[test]
    fn idle_frees_what_is_kept() {
        let mut r = Recycler::new(8 << 20);
        let mut buf = BytesMut::new();
        r.replace(&mut buf, 64 * 1024);
        r.replace(&mut buf, 64 * 1024);
        assert!(r.holds());
        r.idle(); // used since the last check
        assert!(r.holds());
        r.idle();
        assert!(!r.holds());
    }
}
