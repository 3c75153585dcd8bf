//! Channel data: reads and the window they give back (the adjust policy), writes and what
//! bounds them, EOF, CLOSE and release.

use bytes::Bytes;

use super::channel::{Channel, Phase};
use super::ids::ChannelId;
use super::input::Decode;
use super::{Event, ReadOutcome, Session};
use crate::error::ChannelError;
use crate::frame::Frame;

impl Session {
    /// Copies received bytes of channel `id` into `dst`, granting the peer more window when
    /// enough has been consumed.
    pub fn read(&mut self, id: ChannelId, dst: &mut [u8]) -> Result<ReadOutcome, ChannelError> {
        let ended = self.ended;
        let ch = self.chan_mut(id)?;
        if ch.recv.len() == 0 {
            return Self::empty_outcome(ch, ended);
        }
        let n = ch.recv.copy_front(dst);
        self.consumed(id, n);
        Ok(ReadOutcome::Data(n))
    }

    /// Takes up to `max` received bytes of channel `id` without copying them. `Ok(None)` is the
    /// end of the stream; [`ChannelError`]s as for [`Session::read`]; an empty `Bytes` means
    /// nothing is buffered yet.
    pub fn read_chunk(&mut self, id: ChannelId, max: usize) -> Result<Option<Bytes>, ChannelError> {
        let ended = self.ended;
        let ch = self.chan_mut(id)?;
        if ch.recv.len() == 0 || max == 0 {
            return match Self::empty_outcome(ch, ended)? {
                ReadOutcome::Eof => Ok(None),
                _ => Ok(Some(Bytes::new())),
            };
        }
        let b = ch.recv.take_front(max);
        self.consumed(id, b.len());
        Ok(Some(b))
    }

    /// Bytes received on channel `id` and not read yet.
    pub fn buffered(&self, id: ChannelId) -> usize {
        self.chan(id).map(|c| c.recv.len()).unwrap_or(0)
    }

    pub(super) fn empty_outcome(ch: &Channel, ended: bool) -> Result<ReadOutcome, ChannelError> {
        if ch.released {
            return Err(ChannelError::Closed);
        }
        if ch.phase != Phase::Open {
            return Err(ChannelError::NotOpen);
        }
        if ch.eof_received || ch.close_received {
            return Ok(ReadOutcome::Eof);
        }
        if ended {
            return Err(ChannelError::SessionEnded);
        }
        Ok(ReadOutcome::Blocked)
    }

    /// Accounts `n` bytes of channel `id` read by the application, and gives window back
    /// when it is due:
    ///
    /// - when half the grant has been consumed (a peer that streams gets its window back in
    ///   two steps per window, and is never held up by us);
    /// - when the application has read everything received, none of the channel's payload is
    ///   being received, and a DATA frame of a whole max packet arrived since the last
    ///   WINDOW_ADJUST. Some peers (qtalk-js) send one packet of a long write and then wait for
    ///   a WINDOW_ADJUST, whatever window they have left, and whatever they sent before. After
    ///   a whole packet, once it is all read, such a peer may be waiting: it gets what was
    ///   read. The last packet of a write is the only one shorter, and nobody waits after it.
    pub(super) fn consumed(&mut self, id: ChannelId, n: usize) {
        let ended = self.ended;
        let full = self.config.window;
        let budget = self
            .config
            .memory_budget
            .saturating_sub(self.config.send_buffer);
        let left = u32::try_from(budget.saturating_sub(self.reserved)).unwrap_or(u32::MAX);
        let receiving = matches!(self.decode, Decode::Payload { id: p, .. } if p == id);
        let Ok(ch) = self.chan_mut(id) else { return };
        ch.unacked += n as u32;
        let half = ch.unacked >= (ch.grant / 2).max(1);
        let waiting = ch.full_packet && ch.unacked > 0 && ch.recv.len() == 0 && !receiving;
        if !(half || waiting) || ch.close_sent || ch.close_received || ended {
            return;
        }
        let mut bytes = ch.unacked;
        ch.unacked = 0;
        ch.full_packet = false;
        // A channel granted less than a full window while the budget was short grows back as
        // the budget allows.
        let extra = full.saturating_sub(ch.grant).min(left);
        ch.grant += extra;
        bytes += extra;
        ch.recv_window += bytes;
        let remote = ch.remote_id;
        self.reserved += extra as usize;
        self.outbox.queue(Frame::WindowAdjust {
            recipient_id: remote,
            bytes,
        });
    }

    pub(super) fn writable(&self, id: ChannelId) -> Result<&Channel, ChannelError> {
        if self.ended {
            return Err(ChannelError::SessionEnded);
        }
        let ch = self.chan(id)?;
        if ch.released || ch.close_sent || ch.close_received {
            return Err(ChannelError::Closed);
        }
        if ch.phase != Phase::Open {
            return Err(ChannelError::NotOpen);
        }
        if ch.eof_sent {
            return Err(ChannelError::WriteClosed);
        }
        Ok(ch)
    }

    /// Room left in the send buffer for a write on channel `id`: what the send buffer has
    /// left, or for a channel with nothing queued, what is left of an eighth of it kept for
    /// such channels (so that a small write never waits for another channel's bulk data to
    /// drain). What waits for the transport never exceeds the send buffer by more than that
    /// eighth. Zero means wait for the driver to drain the send buffer.
    pub fn send_room(&self, id: ChannelId) -> usize {
        self.outbox.room(id, self.config.send_buffer)
    }

    /// How many bytes a write on channel `id` may queue now: the peer's window, capped by
    /// [`Session::send_room`]. Zero means wait for [`Event::Writable`] or for the driver to
    /// drain the send buffer.
    pub fn send_capacity(&self, id: ChannelId) -> Result<usize, ChannelError> {
        let ch = self.writable(id)?;
        Ok((ch.send_window as usize).min(self.send_room(id)))
    }

    /// Queues as much of `data` as [`Session::send_capacity`] allows, as DATA frames no larger
    /// than the peer's max packet, and returns how many bytes were taken (0: blocked).
    pub fn send(&mut self, id: ChannelId, data: &[u8]) -> Result<usize, ChannelError> {
        let n = data.len().min(self.send_capacity(id)?);
        let ch = self.chan_mut(id)?;
        ch.send_window -= n as u32;
        let (remote, max) = (ch.remote_id, ch.remote_max_packet as usize);
        self.outbox.data(id, remote, max, &data[..n]);
        Ok(n)
    }

    /// Like [`Session::send`] for an owned buffer: large payloads are queued without a copy.
    /// Takes bytes from the front of `data`.
    pub fn send_bytes(&mut self, id: ChannelId, data: &mut Bytes) -> Result<usize, ChannelError> {
        let n = data.len().min(self.send_capacity(id)?);
        let ch = self.chan_mut(id)?;
        ch.send_window -= n as u32;
        let (remote, max) = (ch.remote_id, ch.remote_max_packet as usize);
        self.outbox.data_bytes(id, remote, max, data, n);
        Ok(n)
    }

    /// Sends EOF on channel `id`: the peer reads end-of-stream after the data already queued.
    /// Harmless when already sent or when the channel is closed.
    pub fn close_write(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        let ended = self.ended;
        let ch = self.chan_mut(id)?;
        if ch.phase != Phase::Open {
            return Err(ChannelError::NotOpen);
        }
        if ch.eof_sent || ch.close_sent || ch.close_received || ended {
            return Ok(());
        }
        ch.eof_sent = true;
        let remote = ch.remote_id;
        self.outbox.end(
            id,
            Frame::Eof {
                recipient_id: remote,
            },
        );
        Ok(())
    }

    /// Sends CLOSE on channel `id` unless one was sent already. The channel stays readable until
    /// the handle is released; writes fail from now on.
    pub fn close(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        let ended = self.ended;
        let ch = self.chan_mut(id)?;
        if ch.phase != Phase::Open {
            return Err(ChannelError::NotOpen);
        }
        if ch.close_sent || ended {
            return Ok(());
        }
        ch.close_sent = true;
        let remote = ch.remote_id;
        self.outbox.end(
            id,
            Frame::Close {
                recipient_id: remote,
            },
        );
        self.events.push_back(Event::Writable(id));
        Ok(())
    }

    /// The application dropped its handle on channel `id` (or gave up opening it): close the
    /// channel if needed, drop buffered data, and free the id once the CLOSE handshake is done.
    pub fn release(&mut self, id: ChannelId) {
        let ended = self.ended;
        let Ok(ch) = self.chan_mut(id) else { return };
        if ch.released {
            return;
        }
        ch.released = true;
        ch.recv.clear();
        match ch.phase {
            Phase::Opening if !ended => {} // freed when the reply comes
            Phase::Incoming => {
                let _ = self.reject(id);
            }
            Phase::Open if !ended => {
                let done = ch.close_received;
                let _ = self.close(id);
                if done {
                    self.release_id(id, true);
                }
            }
            _ => self.release_id(id, false),
        }
    }
}
