//! The session state machine: channel table, open/accept handshake, flow-control windows,
//! EOF and CLOSE, and every check on what a peer sends.
//!
//! [`Session`] performs no IO. Bytes received from the transport go into
//! [`Session::handle_input`]; frames to send come out of [`Session::poll_transmit`]; what happened
//! comes out of [`Session::poll_event`]. A driver (such as the `qmux` crate) moves bytes and wakes
//! tasks; it owns no protocol logic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};

use crate::config::Config;
use crate::error::{ChannelError, ProtocolError};
use crate::frame::{self, Frame, DATA_HEADER_LEN, MAX_MAX_PACKET, MIN_MAX_PACKET, MSG_DATA};

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

    fn index(self) -> usize {
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

/// Payloads at most this long are copied into a channel's own buffer instead of sharing the
/// transport read buffer, so that small chunks never pin large read buffers. A longer piece
/// is shared when it is at least half of what is left of the buffer, or when the rest of its
/// frame's payload would fill at least half of it (so the buffer holds mostly that one
/// payload, whatever the reads made of it); otherwise it is copied too.
const SHARE_MIN: usize = 4096;

/// Copied payloads of a channel go into blocks of at most this size (or less, when the
/// channel's window is smaller).
const TAIL_BLOCK: usize = 64 * 1024;

/// A channel's first block of copied payloads; each next one doubles, up to [`TAIL_BLOCK`]. A
/// call's few small messages then cost a small allocation, not a 64 KiB one.
const FIRST_BLOCK: usize = 1024;

/// Payloads handed to [`Session::send_bytes`] at least this long are queued without a copy
/// (when they line up with the stream, see [`ALIGN`]).
const ZERO_COPY_MIN: usize = 16 * 1024;

/// Payloads handed over without a copy from this size on are lined up by padding frames
/// rather than copied, when [`Config::alignment_padding`] is on: at most 567 bytes of padding
/// (0.9%), 283 on average.
const PAD_MIN: usize = 64 * 1024;

/// Copies of bulk data line up with the byte stream on this boundary. The transport copies
/// what it is given into its own buffers, which fill in stream order; a copy whose source and
/// destination differ in their low address bits runs slower than one where they agree (on
/// loopback with 256 KiB writes, copying into a lined-up buffer first was the faster of the
/// two in three runs of four). So a large payload
/// is queued as is only when its address agrees with its stream position modulo `ALIGN`,
/// and is otherwise copied into the scratch buffer, which is kept agreeing.
const ALIGN: u64 = 64;

/// Something the driver should act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer opened a channel: [`Session::accept`] or [`Session::reject`] it.
    Incoming(ChannelId),
    /// A channel this side opened was confirmed or refused: see [`Session::open_status`].
    OpenReply(ChannelId),
    /// An open queued by [`Session::open`] got its channel id (its OPEN is queued to send).
    OpenStarted(OpenTicket, ChannelId),
    /// Data, EOF or CLOSE arrived on a channel: readers may make progress.
    Readable(ChannelId),
    /// A channel's send window grew or the channel closed: writers may make progress.
    Writable(ChannelId),
}

/// A place in the queue of this side's opens waiting for a channel slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenTicket(u64);

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
struct WaitingOpen {
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

/// Outcome of [`Session::read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many bytes were copied.
    Data(usize),
    /// The peer ended its direction and everything it sent has been read.
    Eof,
    /// Nothing to read yet.
    Blocked,
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// We sent OPEN and wait for the reply.
    Opening,
    /// The peer sent OPEN; the application has not accepted yet.
    Incoming,
    /// Confirmed in both directions.
    Open,
    /// The peer refused our OPEN.
    Refused,
}

#[derive(Debug)]
struct Channel {
    remote_id: u32,
    phase: Phase,
    /// Bytes we may still send.
    send_window: u32,
    /// Largest DATA payload the peer accepts.
    remote_max_packet: u32,
    /// Bytes the peer may still send.
    recv_window: u32,
    /// Bytes the application consumed that have not been granted back yet.
    unacked: u32,
    /// Bytes received since our last WINDOW_ADJUST (saturating).
    since_adjust: u32,
    /// The peer sent more than one max packet without waiting for a WINDOW_ADJUST: it
    /// streams, and the window goes back in halves of the grant rather than per packet.
    streams: bool,
    /// This channel's share of the memory budget: `recv_window + recv_len + unacked`.
    grant: u32,
    /// Received data, oldest first; `recv_tail` follows it.
    recv_chunks: VecDeque<Bytes>,
    /// Small payloads coalesced behind `recv_chunks`.
    recv_tail: BytesMut,
    /// Size of the last block allocated for `recv_tail` (0: none yet).
    tail_block: u32,
    recv_len: usize,
    eof_sent: bool,
    close_sent: bool,
    eof_received: bool,
    close_received: bool,
    /// The application no longer holds the channel: incoming data is dropped.
    released: bool,
    /// The id was freed by a CLOSE handshake just before (ids reused at once): until the
    /// channel is confirmed, frames for it are taken as late frames of the previous channel
    /// and dropped, not as early frames of this one.
    reused: bool,
}

impl Channel {
    fn new(phase: Phase, recv_window: u32) -> Self {
        Channel {
            remote_id: 0,
            phase,
            send_window: 0,
            remote_max_packet: MIN_MAX_PACKET,
            recv_window,
            unacked: 0,
            since_adjust: 0,
            streams: false,
            grant: recv_window,
            recv_chunks: VecDeque::new(),
            recv_tail: BytesMut::new(),
            tail_block: 0,
            recv_len: 0,
            eof_sent: false,
            close_sent: false,
            eof_received: false,
            close_received: false,
            released: false,
            reused: false,
        }
    }

    /// True when a frame other than an open reply arrives before the channel is confirmed and
    /// can be dropped as a late frame of the id's previous channel (the reference may send DATA
    /// after its CLOSE).
    fn is_stale_before_open(&self) -> bool {
        self.reused && matches!(self.phase, Phase::Opening | Phase::Incoming)
    }

    /// True when DATA, EOF and CLOSE from the peer are acceptable: the channel is open, or we
    /// opened it and wait for the confirmation. The reference hands an incoming channel to its
    /// application before it sends OPEN_CONFIRM, so its first frames can overtake the
    /// confirmation; they are addressed to our id and within the window our OPEN granted.
    fn may_receive(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Opening)
    }

    fn push_data(&mut self, chunk: Bytes, share: bool) {
        if chunk.is_empty() {
            return;
        }
        self.recv_len += chunk.len();
        if share {
            if !self.recv_tail.is_empty() {
                self.recv_chunks.push_back(self.recv_tail.split().freeze());
            }
            self.recv_chunks.push_back(chunk);
        } else {
            let spare = self.recv_tail.capacity() - self.recv_tail.len();
            if spare < chunk.len() {
                // A new block rather than a doubling buffer: what is copied for a channel
                // costs at most one partly filled block more than the data, and never more
                // than the peer may still send.
                if !self.recv_tail.is_empty() {
                    self.recv_chunks.push_back(self.recv_tail.split().freeze());
                }
                let most = chunk.len() + self.recv_window as usize;
                let next = match self.tail_block as usize {
                    0 => FIRST_BLOCK,
                    last => (last * 2).min(TAIL_BLOCK),
                };
                let block = next.min(most).max(chunk.len());
                self.tail_block = block as u32;
                self.recv_tail = BytesMut::with_capacity(block);
            }
            self.recv_tail.extend_from_slice(&chunk);
        }
    }

    fn clear_recv(&mut self) {
        self.recv_chunks = VecDeque::new();
        self.recv_tail = BytesMut::new();
        self.recv_len = 0;
    }

    /// Takes up to `max` bytes from the front of the receive buffer.
    fn take_front(&mut self, max: usize) -> Bytes {
        let out = if let Some(front) = self.recv_chunks.front_mut() {
            if front.len() <= max {
                self.recv_chunks.pop_front().unwrap_or_default()
            } else {
                front.split_to(max)
            }
        } else {
            let n = max.min(self.recv_tail.len());
            self.recv_tail.split_to(n).freeze()
        };
        self.recv_len -= out.len();
        out
    }

    fn copy_front(&mut self, dst: &mut [u8]) -> usize {
        let mut n = 0;
        while n < dst.len() && self.recv_len > 0 {
            let src: &[u8] = match self.recv_chunks.front() {
                Some(c) => c,
                None => &self.recv_tail,
            };
            let k = src.len().min(dst.len() - n);
            dst[n..n + k].copy_from_slice(&src[..k]);
            n += k;
            match self.recv_chunks.front_mut() {
                Some(c) if c.len() == k => {
                    self.recv_chunks.pop_front();
                }
                Some(c) => c.advance(k),
                None => self.recv_tail.advance(k),
            }
            self.recv_len -= k;
        }
        n
    }
}

#[derive(Debug)]
enum Slot {
    /// Unused. `closed` marks an id freed by a CLOSE handshake: late frames for it are tolerated.
    Free {
        closed: bool,
    },
    Used(Box<Channel>),
}

/// Where the incremental decoder stands.
#[derive(Clone, Copy, Debug)]
enum Decode {
    /// At a frame boundary.
    Header,
    /// Inside a DATA payload; `deliver` is false when the payload is dropped.
    Payload {
        id: ChannelId,
        remaining: u32,
        deliver: bool,
    },
}

/// The protocol state of one qmux session (see the [crate documentation](crate)).
#[derive(Debug)]
pub struct Session {
    config: Config,
    slots: Vec<Slot>,
    /// Ids ready to be given out (lowest first).
    free: BinaryHeap<Reverse<ChannelId>>,
    /// Ids freed by a CLOSE handshake, oldest first, waiting out `id_reuse_delay`.
    quarantine: VecDeque<ChannelId>,
    live: usize,
    incoming: usize,
    /// Sum of the channels' grants.
    reserved: usize,
    /// The peer's OPENs waiting to be admitted, oldest first.
    waiting_in: VecDeque<WaitingOpen>,
    /// OPENs received so far (admitted, queued or refused).
    opens_received: u64,
    /// This side's opens waiting, oldest first.
    waiting_local: VecDeque<OpenTicket>,
    next_ticket: u64,
    /// Admit the peer's OPENs before ours on the next free slot (alternates when both wait).
    peer_first: bool,
    decode: Decode,
    /// Frames not yet handed to the driver, in order; `scratch` follows them.
    outbox: VecDeque<Bytes>,
    scratch: BytesMut,
    /// Bytes ever moved into `outbox`: the stream position of `scratch`'s first byte.
    pushed: u64,
    /// Bytes queued or handed out and not yet reported written.
    unsent: usize,
    events: VecDeque<Event>,
    ended: bool,
}

impl Session {
    /// A session with no channels.
    pub fn new(config: Config) -> Self {
        Session {
            reserved: 0,
            waiting_in: VecDeque::new(),
            opens_received: 0,
            waiting_local: VecDeque::new(),
            next_ticket: 0,
            peer_first: true,
            config,
            slots: Vec::new(),
            free: BinaryHeap::new(),
            quarantine: VecDeque::new(),
            live: 0,
            incoming: 0,
            decode: Decode::Header,
            outbox: VecDeque::new(),
            scratch: BytesMut::with_capacity(64 * 1024),
            pushed: 0,
            unsent: 0,
            events: VecDeque::new(),
            ended: false,
        }
    }

    /// The configuration this session runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of channels holding an id (opening, waiting for accept, open or closing).
    pub fn channel_count(&self) -> usize {
        self.live
    }

    /// True once [`Session::terminate`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    // ----- ids -----

    fn allocate(&mut self, mut ch: Channel) -> ChannelId {
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

    fn release_id(&mut self, id: ChannelId, closed: bool) {
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

    fn chan(&self, id: ChannelId) -> Result<&Channel, ChannelError> {
        match self.slots.get(id.index()) {
            Some(Slot::Used(ch)) => Ok(ch),
            _ => Err(ChannelError::UnknownChannel),
        }
    }

    fn chan_mut(&mut self, id: ChannelId) -> Result<&mut Channel, ChannelError> {
        match self.slots.get_mut(id.index()) {
            Some(Slot::Used(ch)) => Ok(ch),
            _ => Err(ChannelError::UnknownChannel),
        }
    }

    // ----- output -----

    fn queue(&mut self, f: Frame) {
        let before = self.scratch.len();
        f.encode(&mut self.scratch);
        self.unsent += self.scratch.len() - before;
    }

    fn flush_scratch(&mut self) {
        if !self.scratch.is_empty() {
            self.pushed += self.scratch.len() as u64;
            self.outbox.push_back(self.scratch.split().freeze());
        }
    }

    fn push_outbox(&mut self, b: Bytes) {
        self.flush_scratch();
        self.pushed += b.len() as u64;
        self.outbox.push_back(b);
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
    /// (see [`Config::alignment_padding`]). Each frame moves the stream on by 9 bytes, and 9
    /// is invertible modulo 64 (9 × 57 = 513 = 8 × 64 + 1), so at most 63 are needed.
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

    /// Moves every frame waiting to be sent into `out`, in order, and returns their total size.
    /// Report the bytes once written with [`Session::on_transmitted`].
    pub fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        self.flush_scratch();
        let mut n = 0;
        for b in self.outbox.drain(..) {
            n += b.len();
            out.push(b);
        }
        n
    }

    /// True when frames wait to be taken by [`Session::poll_transmit`].
    pub fn has_transmit(&self) -> bool {
        !self.outbox.is_empty() || !self.scratch.is_empty()
    }

    /// Reports that `n` bytes handed out by [`Session::poll_transmit`] reached the transport.
    pub fn on_transmitted(&mut self, n: usize) {
        self.unsent = self.unsent.saturating_sub(n);
    }

    /// Bytes queued for the transport and not yet reported written.
    pub fn unsent(&self) -> usize {
        self.unsent
    }

    /// Next thing the driver should act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- opening -----

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

    fn start_open(&mut self, grant: u32) -> ChannelId {
        self.reserved += grant as usize;
        let id = self.allocate(Channel::new(Phase::Opening, grant));
        self.queue(Frame::Open {
            sender_id: id.get(),
            window: grant,
            max_packet: self.config.max_packet,
        });
        id
    }

    /// The window a new channel gets now (smaller while the budget is short, see
    /// [`FLOOR_WINDOW`]), or `None` while the channel limit (or, for the peer's channels, the
    /// accept backlog) does not allow one.
    fn room(&self, incoming: bool) -> Option<u32> {
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
    fn admit(&mut self) {
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
                self.queue(Frame::OpenFailure {
                    recipient_id: sender_id,
                });
            }
        }
    }

    /// Bytes of receive window granted across all channels (the budget in use, besides the
    /// send buffer).
    pub fn reserved(&self) -> usize {
        self.reserved
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
        self.queue(Frame::OpenConfirm {
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
            self.queue(Frame::OpenFailure {
                recipient_id: remote,
            });
        }
        self.release_id(id, false);
        Ok(())
    }

    // ----- data -----

    /// Copies received bytes of channel `id` into `dst`, granting the peer more window when
    /// enough has been consumed.
    pub fn read(&mut self, id: ChannelId, dst: &mut [u8]) -> Result<ReadOutcome, ChannelError> {
        let ended = self.ended;
        let ch = self.chan_mut(id)?;
        if ch.recv_len == 0 {
            return Self::empty_outcome(ch, ended);
        }
        let n = ch.copy_front(dst);
        self.consumed(id, n);
        Ok(ReadOutcome::Data(n))
    }

    /// Takes up to `max` received bytes of channel `id` without copying them. `Ok(None)` is the
    /// end of the stream; [`ChannelError`]s as for [`Session::read`]; an empty `Bytes` means
    /// nothing is buffered yet.
    pub fn read_chunk(&mut self, id: ChannelId, max: usize) -> Result<Option<Bytes>, ChannelError> {
        let ended = self.ended;
        let ch = self.chan_mut(id)?;
        if ch.recv_len == 0 || max == 0 {
            return match Self::empty_outcome(ch, ended)? {
                ReadOutcome::Eof => Ok(None),
                _ => Ok(Some(Bytes::new())),
            };
        }
        let b = ch.take_front(max);
        self.consumed(id, b.len());
        Ok(Some(b))
    }

    /// Bytes received on channel `id` and not read yet.
    pub fn buffered(&self, id: ChannelId) -> usize {
        self.chan(id).map(|c| c.recv_len).unwrap_or(0)
    }

    fn empty_outcome(ch: &Channel, ended: bool) -> Result<ReadOutcome, ChannelError> {
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

    fn consumed(&mut self, id: ChannelId, n: usize) {
        let ended = self.ended;
        let full = self.config.window;
        let budget = self
            .config
            .memory_budget
            .saturating_sub(self.config.send_buffer);
        let left = u32::try_from(budget.saturating_sub(self.reserved)).unwrap_or(u32::MAX);
        let max_packet = self.config.max_packet;
        let Ok(ch) = self.chan_mut(id) else { return };
        ch.unacked += n as u32;
        // Window goes back at half the grant. Some peers (qtalk-js) wait for a WINDOW_ADJUST
        // after each packet of a long write even with window left, and would stall for lack of
        // one: until a peer has shown that it streams (more than a max packet sent with no
        // adjust from us), the window goes back at every max packet consumed.
        let threshold = if ch.streams {
            ch.grant / 2
        } else {
            (ch.grant / 2).min(max_packet)
        }
        .max(1);
        if ch.unacked < threshold || ch.close_sent || ch.close_received || ended {
            return;
        }
        let mut bytes = ch.unacked;
        ch.unacked = 0;
        ch.since_adjust = 0;
        // A channel granted less than a full window while the budget was short grows back as
        // the budget allows.
        let extra = full.saturating_sub(ch.grant).min(left);
        ch.grant += extra;
        bytes += extra;
        ch.recv_window += bytes;
        let remote = ch.remote_id;
        self.reserved += extra as usize;
        self.queue(Frame::WindowAdjust {
            recipient_id: remote,
            bytes,
        });
    }

    fn writable(&self, id: ChannelId) -> Result<&Channel, ChannelError> {
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

    /// How many bytes a write on channel `id` may queue now: the peer's window, capped by the
    /// room left in the send buffer. Zero means wait for [`Event::Writable`] or for the driver
    /// to drain the send buffer.
    pub fn send_capacity(&self, id: ChannelId) -> Result<usize, ChannelError> {
        let ch = self.writable(id)?;
        let room = self.config.send_buffer.saturating_sub(self.unsent);
        Ok((ch.send_window as usize).min(room))
    }

    /// Queues as much of `data` as [`Session::send_capacity`] allows, as DATA frames no larger
    /// than the peer's max packet, and returns how many bytes were taken (0: blocked).
    pub fn send(&mut self, id: ChannelId, data: &[u8]) -> Result<usize, ChannelError> {
        let n = data.len().min(self.send_capacity(id)?);
        let ch = self.chan_mut(id)?;
        ch.send_window -= n as u32;
        let (remote, max) = (ch.remote_id, ch.remote_max_packet as usize);
        let total = n + DATA_HEADER_LEN * n.div_ceil(max);
        if n >= ZERO_COPY_MIN {
            self.reserve_aligned(total);
        } else {
            self.scratch.reserve(total);
        }
        for piece in data[..n].chunks(max) {
            frame::encode_data_header(remote, piece.len() as u32, &mut self.scratch);
            self.scratch.extend_from_slice(piece);
            self.unsent += DATA_HEADER_LEN + piece.len();
        }
        Ok(n)
    }

    /// Like [`Session::send`] for an owned buffer: large payloads are queued without a copy.
    /// Takes bytes from the front of `data`.
    pub fn send_bytes(&mut self, id: ChannelId, data: &mut Bytes) -> Result<usize, ChannelError> {
        let n = data.len().min(self.send_capacity(id)?);
        if n < ZERO_COPY_MIN {
            let k = self.send(id, &data[..n])?;
            data.advance(k);
            return Ok(k);
        }
        let ch = self.chan_mut(id)?;
        ch.send_window -= n as u32;
        let (remote, max) = (ch.remote_id, ch.remote_max_packet as usize);
        let mut left = n;
        while left > 0 {
            let piece = data.split_to(left.min(max));
            left -= piece.len();
            if piece.len() >= PAD_MIN && self.config.alignment_padding {
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
                self.push_outbox(piece);
            }
        }
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
        self.queue(Frame::Eof {
            recipient_id: remote,
        });
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
        self.queue(Frame::Close {
            recipient_id: remote,
        });
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
        ch.clear_recv();
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

    // ----- input -----

    /// Consumes every complete frame (and any partial DATA payload) at the front of `src`.
    ///
    /// A DATA frame is checked against its channel (known id, max packet, window) as soon as
    /// its 9-byte header is in, before any of its payload is awaited; its payload is delivered
    /// as it arrives. Any error is fatal to the session: stop reading and call
    /// [`Session::terminate`].
    pub fn handle_input(&mut self, src: &mut BytesMut) -> Result<(), ProtocolError> {
        let half = src.capacity() / 2;
        let share_min = SHARE_MIN.max(half);
        loop {
            match self.decode {
                Decode::Payload {
                    id,
                    remaining,
                    deliver,
                } => {
                    if src.is_empty() {
                        return Ok(());
                    }
                    let n = (remaining as usize).min(src.len());
                    if deliver {
                        let chunk = src.split_to(n);
                        match self.slots.get_mut(id.index()) {
                            Some(Slot::Used(ch)) if !ch.released => {
                                let share = chunk.len() >= share_min
                                    || (chunk.len() >= SHARE_MIN && remaining as usize >= half);
                                ch.push_data(chunk.freeze(), share);
                                self.events.push_back(Event::Readable(id));
                            }
                            _ => {}
                        }
                    } else {
                        src.advance(n);
                    }
                    let remaining = remaining - n as u32;
                    self.decode = if remaining == 0 {
                        Decode::Header
                    } else {
                        Decode::Payload {
                            id,
                            remaining,
                            deliver,
                        }
                    };
                }
                Decode::Header => {
                    let Some(&kind) = src.first() else {
                        return Ok(());
                    };
                    let head =
                        frame::header_len(kind).ok_or(ProtocolError::UnknownFrameType { kind })?;
                    if src.len() < head {
                        return Ok(());
                    }
                    if kind == MSG_DATA {
                        let id = ChannelId(frame::read_u32(src, 1));
                        let len = frame::read_u32(src, 5);
                        let deliver = self.check_data(id, len)?;
                        src.advance(head);
                        if len > 0 {
                            self.decode = Decode::Payload {
                                id,
                                remaining: len,
                                deliver,
                            };
                        }
                    } else {
                        let f = frame::parse_fixed(kind, &src[..head]);
                        src.advance(head);
                        self.handle_frame(f)?;
                    }
                }
            }
        }
    }

    /// Bytes still needed to finish the DATA payload being received (0 at a frame boundary).
    pub fn payload_remaining(&self) -> usize {
        match self.decode {
            Decode::Payload { remaining, .. } => remaining as usize,
            Decode::Header => 0,
        }
    }

    /// The transport reached end-of-stream with `leftover` undecoded bytes: an error when the
    /// stream stopped inside a frame.
    pub fn handle_eof(&self, leftover: &[u8]) -> Result<(), ProtocolError> {
        if let Decode::Payload { remaining, .. } = self.decode {
            return Err(ProtocolError::Truncated {
                missing: remaining as usize,
            });
        }
        match leftover.first() {
            None => Ok(()),
            Some(&kind) => {
                let head =
                    frame::header_len(kind).ok_or(ProtocolError::UnknownFrameType { kind })?;
                Err(ProtocolError::Truncated {
                    missing: head.saturating_sub(leftover.len()).max(1),
                })
            }
        }
    }

    /// Validates a DATA header; returns whether its payload goes to a reader.
    fn check_data(&mut self, id: ChannelId, len: u32) -> Result<bool, ProtocolError> {
        let max = self.config.max_packet;
        if len > max {
            return Err(ProtocolError::PacketTooLarge {
                channel: id.get(),
                len,
                max,
            });
        }
        let ch = match self.slots.get_mut(id.index()) {
            Some(Slot::Used(ch)) => ch,
            Some(Slot::Free { closed: true }) => return Ok(false),
            _ => {
                return Err(ProtocolError::UnknownChannel {
                    kind: MSG_DATA,
                    channel: id.get(),
                })
            }
        };
        if ch.is_stale_before_open() {
            return Ok(false);
        }
        if !ch.may_receive() {
            return Err(ProtocolError::NotYetOpen {
                kind: MSG_DATA,
                channel: id.get(),
            });
        }
        if len > ch.recv_window {
            return Err(ProtocolError::WindowExceeded {
                channel: id.get(),
                len,
                window: ch.recv_window,
            });
        }
        ch.recv_window -= len;
        ch.since_adjust = ch.since_adjust.saturating_add(len);
        if ch.since_adjust > max {
            ch.streams = true;
        }
        Ok(!ch.released && !ch.close_received && !ch.eof_received)
    }

    fn handle_frame(&mut self, f: Frame) -> Result<(), ProtocolError> {
        let kind = f.kind();
        if let Frame::Open {
            sender_id,
            window,
            max_packet,
        } = f
        {
            return self.handle_open(sender_id, window, max_packet);
        }
        let id = ChannelId(f.recipient_id().unwrap_or_default());
        let ch = match self.slots.get_mut(id.index()) {
            Some(Slot::Used(ch)) => ch,
            Some(Slot::Free { closed: true }) => {
                return match f {
                    // Late frames a peer may still send after its CLOSE crossed ours.
                    Frame::Eof { .. } | Frame::WindowAdjust { .. } => Ok(()),
                    Frame::Close { .. } => Err(ProtocolError::DuplicateClose { channel: id.get() }),
                    _ => Err(ProtocolError::UnexpectedOpenReply {
                        kind,
                        channel: id.get(),
                    }),
                };
            }
            _ => {
                return Err(ProtocolError::UnknownChannel {
                    kind,
                    channel: id.get(),
                })
            }
        };
        match f {
            Frame::OpenConfirm {
                sender_id,
                window,
                max_packet,
                ..
            } => {
                if ch.phase != Phase::Opening {
                    return Err(ProtocolError::UnexpectedOpenReply {
                        kind,
                        channel: id.get(),
                    });
                }
                if !(MIN_MAX_PACKET..=MAX_MAX_PACKET).contains(&max_packet) {
                    return Err(ProtocolError::InvalidMaxPacket {
                        channel: id.get(),
                        max_packet,
                    });
                }
                ch.phase = Phase::Open;
                ch.remote_id = sender_id;
                ch.send_window = window;
                ch.remote_max_packet = max_packet;
                let (released, closed_early) = (ch.released, ch.close_received);
                if released || closed_early {
                    // Nobody waits for it any more, or the peer closed it before confirming:
                    // send our CLOSE now that we know the peer's id.
                    ch.close_sent = true;
                    self.queue(Frame::Close {
                        recipient_id: sender_id,
                    });
                }
                if !released {
                    self.events.push_back(Event::OpenReply(id));
                } else if closed_early {
                    self.release_id(id, true);
                }
            }
            Frame::OpenFailure { .. } => {
                if ch.phase != Phase::Opening {
                    return Err(ProtocolError::UnexpectedOpenReply {
                        kind,
                        channel: id.get(),
                    });
                }
                if ch.released {
                    self.release_id(id, false);
                } else {
                    ch.phase = Phase::Refused;
                    self.events.push_back(Event::OpenReply(id));
                }
            }
            Frame::WindowAdjust { .. } | Frame::Eof { .. } if ch.is_stale_before_open() => {}
            Frame::WindowAdjust { bytes, .. } => {
                if ch.phase != Phase::Open {
                    return Err(ProtocolError::NotYetOpen {
                        kind,
                        channel: id.get(),
                    });
                }
                ch.send_window =
                    ch.send_window
                        .checked_add(bytes)
                        .ok_or(ProtocolError::WindowOverflow {
                            channel: id.get(),
                            window: ch.send_window,
                            add: bytes,
                        })?;
                if bytes > 0 {
                    self.events.push_back(Event::Writable(id));
                }
            }
            Frame::Eof { .. } => {
                if !ch.may_receive() {
                    return Err(ProtocolError::NotYetOpen {
                        kind,
                        channel: id.get(),
                    });
                }
                ch.eof_received = true;
                self.events.push_back(Event::Readable(id));
            }
            Frame::Close { .. } if ch.phase == Phase::Opening && !ch.reused => {
                // Closed before the confirmation (see `may_receive`): our CLOSE follows the
                // OPEN_CONFIRM, once the peer's id is known.
                if ch.close_received {
                    return Err(ProtocolError::DuplicateClose { channel: id.get() });
                }
                ch.close_received = true;
            }
            Frame::Close { .. } => {
                if ch.phase != Phase::Open {
                    return Err(ProtocolError::NotYetOpen {
                        kind,
                        channel: id.get(),
                    });
                }
                if ch.close_received {
                    return Err(ProtocolError::DuplicateClose { channel: id.get() });
                }
                ch.close_received = true;
                let reply = !ch.close_sent;
                ch.close_sent = true;
                let (remote, released) = (ch.remote_id, ch.released);
                if reply {
                    self.queue(Frame::Close {
                        recipient_id: remote,
                    });
                }
                if released {
                    self.release_id(id, true);
                } else {
                    self.events.push_back(Event::Readable(id));
                    self.events.push_back(Event::Writable(id));
                }
            }
            Frame::Data { .. } | Frame::Open { .. } => unreachable!("handled before"),
        }
        Ok(())
    }

    fn handle_open(
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
        self.queue(Frame::OpenFailure {
            recipient_id: sender_id,
        });
        Ok(())
    }

    fn admit_incoming(&mut self, sender_id: u32, window: u32, max_packet: u32, grant: u32) {
        let mut ch = Channel::new(Phase::Incoming, grant);
        ch.remote_id = sender_id;
        ch.send_window = window;
        ch.remote_max_packet = max_packet;
        self.reserved += grant as usize;
        let id = self.allocate(ch);
        self.incoming += 1;
        self.events.push_back(Event::Incoming(id));
    }

    /// Ends the session (transport gone or protocol error): every later operation fails, reads
    /// return what was buffered and then [`ChannelError::SessionEnded`] unless the peer had
    /// properly ended the stream. Pending frames are dropped.
    pub fn terminate(&mut self) {
        self.ended = true;
        self.waiting_in.clear();
        self.waiting_local.clear();
        self.outbox.clear();
        self.scratch.clear();
        self.unsent = 0;
    }

    /// Peer's id for channel `id` (for diagnostics).
    pub fn remote_id(&self, id: ChannelId) -> Option<u32> {
        self.chan(id).ok().map(|c| c.remote_id)
    }

    /// Send window left on channel `id` (for diagnostics and tests).
    pub fn send_window(&self, id: ChannelId) -> Option<u32> {
        self.chan(id).ok().map(|c| c.send_window)
    }

    /// True when the peer has sent CLOSE on channel `id`, or the channel is gone.
    pub fn is_closed_by_peer(&self, id: ChannelId) -> bool {
        self.chan(id).map(|c| c.close_received).unwrap_or(true)
    }
}
