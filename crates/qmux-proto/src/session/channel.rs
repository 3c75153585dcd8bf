//! One channel's state: its phase in the open handshake, both windows, EOF and CLOSE.

use super::recv::RecvBuffer;
use crate::frame::MIN_MAX_PACKET;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
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
pub(super) struct Channel {
    pub(super) remote_id: u32,
    pub(super) phase: Phase,
    /// Bytes we may still send.
    pub(super) send_window: u32,
    /// Largest DATA payload the peer accepts.
    pub(super) remote_max_packet: u32,
    /// Bytes the peer may still send.
    pub(super) recv_window: u32,
    /// Bytes the application consumed that have not been granted back yet.
    pub(super) unacked: u32,
    /// A DATA frame of a whole max packet arrived since our last WINDOW_ADJUST: the peer may
    /// wait for one before it sends more (see `Session::consumed`).
    pub(super) full_packet: bool,
    /// This channel's share of the memory budget: `recv_window + recv.len() + unacked`.
    pub(super) grant: u32,
    /// Received data not read yet.
    pub(super) recv: RecvBuffer,
    pub(super) eof_sent: bool,
    pub(super) close_sent: bool,
    pub(super) eof_received: bool,
    pub(super) close_received: bool,
    /// The application no longer holds the channel: incoming data is dropped.
    pub(super) released: bool,
    /// The id was freed by a CLOSE handshake just before (ids reused at once): until the
    /// channel is confirmed, frames for it are taken as late frames of the previous channel
    /// and dropped, not as early frames of this one.
    pub(super) reused: bool,
}

impl Channel {
    pub(super) fn new(phase: Phase, recv_window: u32) -> Self {
        Channel {
            remote_id: 0,
            phase,
            send_window: 0,
            remote_max_packet: MIN_MAX_PACKET,
            recv_window,
            unacked: 0,
            full_packet: false,
            grant: recv_window,
            recv: RecvBuffer::default(),
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
    pub(super) fn is_stale_before_open(&self) -> bool {
        self.reused && matches!(self.phase, Phase::Opening | Phase::Incoming)
    }

    /// True when DATA, EOF and CLOSE from the peer are acceptable: the channel is open, or we
    /// opened it and wait for the confirmation. The reference hands an incoming channel to its
    /// application before it sends OPEN_CONFIRM, so its first frames can overtake the
    /// confirmation; they are addressed to our id and within the window our OPEN granted.
    pub(super) fn may_receive(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Opening)
    }
}
