//! Channel ids: the wire numbers, the slot table, and which ids are free (lowest first, after
//! `id_reuse_delay` other closes for those freed by a CLOSE handshake).

use std::cmp::Reverse;

use super::channel::Channel;
use super::Session;
use crate::error::ChannelError;

/// A channel's id on this side of the session: the number the peer names it by on the wire
/// (its frames' recipient id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(u32);

impl ChannelId {
    /// The id with this wire number.
    pub const fn new(id: u32) -> ChannelId {
        ChannelId(id)
    }

    /// The wire number.
    pub const fn get(self) -> u32 {
        self.0
    }

    pub(super) fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ChannelId> for u32 {
    fn from(id: ChannelId) -> u32 {
        id.0
    }
}

#[derive(Debug)]
pub(super) enum Slot {
    /// Unused. `closed` marks an id freed by a CLOSE handshake: late frames for it are tolerated.
    Free {
        closed: bool,
    },
    Used(Box<Channel>),
}

impl Session {
    pub(super) fn allocate(&mut self, mut ch: Channel) -> ChannelId {
        self.live += 1;
        if let Some(Reverse(id)) = self.free.pop() {
            // With reuse delayed, late frames of the id's previous channel are not expected any
            // more; frames before the confirmation are then early frames of this one.
            ch.reused = self.config.id_reuse_delay == 0
                && matches!(self.slots[id.index()], Slot::Free { closed: true });
            self.slots[id.index()] = Slot::Used(Box::new(ch));
            id
        } else {
            self.slots.push(Slot::Used(Box::new(ch)));
            ChannelId((self.slots.len() - 1) as u32)
        }
    }

    pub(super) fn release_id(&mut self, id: ChannelId, closed: bool) {
        // What is queued for the channel leaves before anything of the id's next channel.
        self.outbox.flush_channel(id);
        if let Slot::Used(ch) = &self.slots[id.index()] {
            self.reserved -= ch.grant as usize;
        }
        self.slots[id.index()] = Slot::Free { closed };
        self.live -= 1;
        self.admit();
        if !closed {
            // Refused or rejected: the peer never used this id, nothing late can come.
            self.free.push(Reverse(id));
            return;
        }
        self.quarantine.push_back(id);
        while self.quarantine.len() > self.config.id_reuse_delay {
            if let Some(old) = self.quarantine.pop_front() {
                self.free.push(Reverse(old));
            }
        }
    }

    pub(super) fn chan(&self, id: ChannelId) -> Result<&Channel, ChannelError> {
        match self.slots.get(id.index()) {
            Some(Slot::Used(ch)) => Ok(ch),
            _ => Err(ChannelError::UnknownChannel),
        }
    }

    pub(super) fn chan_mut(&mut self, id: ChannelId) -> Result<&mut Channel, ChannelError> {
        match self.slots.get_mut(id.index()) {
            Some(Slot::Used(ch)) => Ok(ch),
            _ => Err(ChannelError::UnknownChannel),
        }
    }
}
