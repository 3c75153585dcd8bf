//! The session state machine: channel table, open/accept handshake, flow-control windows,
//! EOF and CLOSE, and every check on what a peer sends.
//!
//! [`Session`] performs no IO. Bytes received from the transport go into
//! [`Session::handle_input`]; frames to send come out of [`Session::poll_transmit`]; what happened
//! comes out of [`Session::poll_event`]. A driver (such as the `qmux` crate) moves bytes and wakes
//! tasks; it owns no protocol logic.
//!
//! The parts: `ids` (the slot table and free ids), `channel` (one channel's state), `recv`
//! (its receive buffer), `admission` (opens, accepts, limits and budget shares), `data`
//! (reads, writes, the window given back, EOF, CLOSE, release), `outbox` (frames waiting to
//! be sent), `input` (the incremental decoder and the checks on what the peer sends).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use bytes::Bytes;

use crate::config::Config;

mod admission;
mod channel;
mod data;
mod ids;
mod input;
mod outbox;
mod recv;

pub use admission::{OpenStart, OpenStatus, OpenTicket, FLOOR_WINDOW};
pub use ids::ChannelId;

use admission::WaitingOpen;
use ids::Slot;
use input::Decode;
use outbox::Outbox;

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
    outbox: Outbox,
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
            outbox: Outbox::new(),
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

    /// Moves every frame waiting to be sent into `out`, in the order they are to be written,
    /// and returns their total size. Report the bytes once written with
    /// [`Session::on_transmitted`]. See [`Session::poll_transmit_up_to`] for the order.
    pub fn poll_transmit(&mut self, out: &mut Vec<Bytes>) -> usize {
        self.poll_transmit_up_to(out, usize::MAX)
    }

    /// Moves frames waiting to be sent into `out` until at least `max` bytes were moved or
    /// none are left, and returns how many bytes were moved. Control frames (window adjusts,
    /// opens and their replies, and the EOF and CLOSE of channels with no data waiting) come
    /// first; then the channels with DATA waiting take turns, one frame of at most 256 KiB
    /// each, so that a channel with a little to send never waits behind the bulk data of
    /// another; a channel's EOF and CLOSE follow its last frame. A driver that takes a batch
    /// at a time, and the next one once it is written, keeps what a new frame can wait
    /// behind to one batch.
    pub fn poll_transmit_up_to(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let padding = self.config.alignment_padding;
        self.outbox.poll_transmit(out, max, padding)
    }

    /// True when frames wait to be taken by [`Session::poll_transmit`].
    pub fn has_transmit(&self) -> bool {
        self.outbox.has_transmit()
    }

    /// Reports that `n` bytes handed out by [`Session::poll_transmit`] reached the transport.
    pub fn on_transmitted(&mut self, n: usize) {
        self.outbox.on_transmitted(n);
    }

    /// Bytes queued for the transport and not yet reported written.
    pub fn unsent(&self) -> usize {
        self.outbox.unsent()
    }

    /// Next thing the driver should act on.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes of receive window granted across all channels (the budget in use, besides the
    /// send buffer).
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Ends the session (transport gone or protocol error): every later operation fails, reads
    /// return what was buffered and then [`ChannelError`](crate::ChannelError)`::SessionEnded`
    /// unless the peer had properly ended the stream. Pending frames are dropped.
    pub fn terminate(&mut self) {
        self.ended = true;
        self.waiting_in.clear();
        self.waiting_local.clear();
        self.outbox.clear();
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
