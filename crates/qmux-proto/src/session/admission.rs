//! Admission: this side's opens and the peer's OPENs, the channel limit, the accept backlog,
//! the queues where opens wait for a slot, and each new channel's share of the memory budget.

use super::channel::{Channel, Phase};
use super::ids::ChannelId;
use super::{Event, Session};
use crate::error::{ChannelError, ProtocolError};
use crate::frame::{Frame, MAX_MAX_PACKET, MIN_MAX_PACKET};

/// A place in the queue of this side's opens waiting for a channel slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenTicket(pub(super) u64);

/// What [`Session::open`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenStart {
    /// The OPEN is queued to send on this channel.
    Started(ChannelId),
    /// The session is at its channel limit: [`Event::OpenStarted`] follows
    /// when a slot frees (or [`Session::cancel_open`] gives up).
    Queued(OpenTicket),
}

/// An OPEN from the peer waiting to be admitted.
#[derive(Clone, Copy, Debug)]
pub(super) struct WaitingOpen {
    sender_id: u32,
    window: u32,
    max_packet: u32,
    /// Its place among all OPENs received (see [`Session::opens_received`]).
    seq: u64,
}

/// Smallest share of the budget a channel gets while the budget is short.
const MIN_GRANT: u32 = 64 * 1024;
/// The window of a channel opened once the budget is spent: channels are never held back by
/// the budget (a peer waiting for its own channels could deadlock), they start this small and
/// grow as the budget frees up. What a session can hold is thus bounded by the budget plus
/// `max_channels` times this.
pub const FLOOR_WINDOW: u32 = 4 * 1024;

/// State of a channel this side opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenStatus {
    /// No reply yet.
    Pending,
    /// The peer confirmed: the channel is open.
    Confirmed,
    /// The peer refused.
    Refused,
}

impl Session {
    /// Starts opening a channel: queues an OPEN at once when a channel slot is free, else
    /// queues the open itself. Watch for [`Event::OpenStarted`] (queued opens) and
    /// [`Event::OpenReply`], and check [`Session::open_status`].
    pub fn open(&mut self) -> Result<OpenStart, ChannelError> {
        if self.ended {
            return Err(ChannelError::SessionEnded);
        }
        if self.waiting_local.is_empty() {
            if let Some(grant) = self.room(false) {
                return Ok(OpenStart::Started(self.start_open(grant)));
            }
        }
        let t = OpenTicket(self.next_ticket);
        self.next_ticket += 1;
        self.waiting_local.push_back(t);
        Ok(OpenStart::Queued(t))
    }

    /// Gives up an open still queued (see [`OpenStart::Queued`]); false when it was started
    /// already (release its channel then) or is unknown.
    pub fn cancel_open(&mut self, ticket: OpenTicket) -> bool {
        match self.waiting_local.binary_search(&ticket) {
            Ok(i) => {
                self.waiting_local.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    pub(super) fn start_open(&mut self, grant: u32) -> ChannelId {
        self.reserved += grant as usize;
        let id = self.allocate(Channel::new(Phase::Opening, grant));
        self.outbox.queue(Frame::Open {
            sender_id: id.get(),
            window: grant,
            max_packet: self.config.max_packet,
        });
        id
    }

    /// The window a new channel gets now (smaller while the budget is short, see
    /// [`FLOOR_WINDOW`]), or `None` while the channel limit (or, for the peer's channels, the
    /// accept backlog) does not allow one.
    pub(super) fn room(&self, incoming: bool) -> Option<u32> {
        if self.live >= self.config.max_channels
            || (incoming && self.incoming >= self.config.accept_backlog)
        {
            return None;
        }
        let budget = self
            .config
            .memory_budget
            .saturating_sub(self.config.send_buffer);
        let left = budget.saturating_sub(self.reserved);
        let want = self.config.window;
        let grant = u32::try_from(left).unwrap_or(u32::MAX).min(want);
        if grant >= want.min(MIN_GRANT) {
            Some(grant)
        } else {
            Some(want.min(FLOOR_WINDOW))
        }
    }

    /// Admits waiting opens (either side's, alternating) while slots allow.
    pub(super) fn admit(&mut self) {
        if self.ended {
            return;
        }
        loop {
            let peer = !self.waiting_in.is_empty() && self.room(true).is_some();
            let local = !self.waiting_local.is_empty() && self.room(false).is_some();
            if peer && (self.peer_first || !local) {
                let (Some(w), Some(grant)) = (self.waiting_in.pop_front(), self.room(true)) else {
                    break;
                };
                self.admit_incoming(w.sender_id, w.window, w.max_packet, grant);
                self.peer_first = false;
            } else if local {
                let (Some(t), Some(grant)) = (self.waiting_local.pop_front(), self.room(false))
                else {
                    break;
                };
                let id = self.start_open(grant);
                self.events.push_back(Event::OpenStarted(t, id));
                self.peer_first = true;
            } else {
                break;
            }
        }
    }

    /// OPENs received from the peer so far, admitted, waiting or refused: the driver notes
    /// this after each input to time out waiting ones with [`Session::refuse_waiting`].
    pub fn opens_received(&self) -> u64 {
        self.opens_received
    }

    /// The peer's OPENs waiting to be admitted.
    pub fn opens_waiting(&self) -> usize {
        self.waiting_in.len()
    }

    /// Refuses (OPEN_FAILURE) the peer's OPENs still waiting that were received before the
    /// first `received` OPENs were counted (their wait timed out).
    pub fn refuse_waiting(&mut self, received: u64) {
        while let Some(w) = self.waiting_in.front() {
            if w.seq >= received {
                break;
            }
            let sender_id = w.sender_id;
            self.waiting_in.pop_front();
            if !self.ended {
                self.outbox.queue(Frame::OpenFailure {
                    recipient_id: sender_id,
                });
            }
        }
    }

    /// Where an open started by [`Session::open`] stands.
    pub fn open_status(&self, id: ChannelId) -> Result<OpenStatus, ChannelError> {
        let ch = self.chan(id)?;
        match ch.phase {
            Phase::Opening if self.ended => Err(ChannelError::SessionEnded),
            Phase::Opening => Ok(OpenStatus::Pending),
            Phase::Open => Ok(OpenStatus::Confirmed),
            Phase::Refused => Ok(OpenStatus::Refused),
            Phase::Incoming => Err(ChannelError::NotOpen),
        }
    }

    /// Confirms a channel the peer opened ([`Event::Incoming`]).
    pub fn accept(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        if self.ended {
            return Err(ChannelError::SessionEnded);
        }
        let max_packet = self.config.max_packet;
        let ch = self.chan_mut(id)?;
        if ch.phase != Phase::Incoming {
            return Err(ChannelError::NotOpen);
        }
        ch.phase = Phase::Open;
        let (remote, grant) = (ch.remote_id, ch.grant);
        self.incoming -= 1;
        self.outbox.queue(Frame::OpenConfirm {
            recipient_id: remote,
            sender_id: id.get(),
            window: grant,
            max_packet,
        });
        self.admit();
        Ok(())
    }

    /// Refuses a channel the peer opened ([`Event::Incoming`]); its id is free again.
    pub fn reject(&mut self, id: ChannelId) -> Result<(), ChannelError> {
        let ch = self.chan(id)?;
        if ch.phase != Phase::Incoming {
            return Err(ChannelError::NotOpen);
        }
        let remote = ch.remote_id;
        self.incoming -= 1;
        if !self.ended {
            self.outbox.queue(Frame::OpenFailure {
                recipient_id: remote,
            });
        }
        self.release_id(id, false);
        Ok(())
    }

    pub(super) fn handle_open(
        &mut self,
        sender_id: u32,
        window: u32,
        max_packet: u32,
    ) -> Result<(), ProtocolError> {
        let seq = self.opens_received;
        self.opens_received += 1;
        let acceptable = (MIN_MAX_PACKET..=MAX_MAX_PACKET).contains(&max_packet);
        if acceptable && !self.ended {
            if self.waiting_in.is_empty() {
                if let Some(grant) = self.room(true) {
                    self.admit_incoming(sender_id, window, max_packet, grant);
                    return Ok(());
                }
            }
            if self.waiting_in.len() < self.config.open_queue {
                // Slowed down, not refused: confirmed once a slot and budget free up.
                self.waiting_in.push_back(WaitingOpen {
                    sender_id,
                    window,
                    max_packet,
                    seq,
                });
                return Ok(());
            }
        }
        self.outbox.queue(Frame::OpenFailure {
            recipient_id: sender_id,
        });
        Ok(())
    }

    pub(super) fn admit_incoming(
        &mut self,
        sender_id: u32,
        window: u32,
        max_packet: u32,
        grant: u32,
    ) {
        let mut ch = Channel::new(Phase::Incoming, grant);
        ch.remote_id = sender_id;
        ch.send_window = window;
        ch.remote_max_packet = max_packet;
        self.reserved += grant as usize;
        let id = self.allocate(ch);
        self.incoming += 1;
        self.events.push_back(Event::Incoming(id));
    }
}
