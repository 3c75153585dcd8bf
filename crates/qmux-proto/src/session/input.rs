//! Input: the incremental decoder (a DATA header is checked before its payload is awaited,
//! payloads are delivered as they arrive) and every check on the frames the peer sends.

use bytes::{Buf, BytesMut};

use super::channel::Phase;
use super::ids::{ChannelId, Slot};
use super::recv::SHARE_MIN;
use super::{Event, Session};
use crate::error::ProtocolError;
use crate::frame::{self, Frame, MAX_MAX_PACKET, MIN_MAX_PACKET, MSG_DATA};

/// Where the incremental decoder stands.
#[derive(Clone, Copy, Debug)]
pub(super) enum Decode {
    /// At a frame boundary.
    Header,
    /// Inside a DATA payload; `deliver` is false when the payload is dropped.
    Payload {
        id: ChannelId,
        remaining: u32,
        deliver: bool,
    },
}

impl Session {
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
                                let window = ch.recv_window;
                                ch.recv.push(chunk.freeze(), share, window);
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
                        let id = ChannelId::new(frame::read_u32(src, 1));
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
    pub(super) fn check_data(&mut self, id: ChannelId, len: u32) -> Result<bool, ProtocolError> {
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
        if len == max {
            ch.full_packet = true;
        }
        Ok(!ch.released && !ch.close_received && !ch.eof_received)
    }

    pub(super) fn handle_frame(&mut self, f: Frame) -> Result<(), ProtocolError> {
        let kind = f.kind();
        if let Frame::Open {
            sender_id,
            window,
            max_packet,
        } = f
        {
            return self.handle_open(sender_id, window, max_packet);
        }
        let id = ChannelId::new(f.recipient_id().unwrap_or_default());
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
                    self.outbox.queue(Frame::Close {
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
                    // Behind our DATA still queued, which the peer may drop.
                    self.outbox.end(
                        id,
                        Frame::Close {
                            recipient_id: remote,
                        },
                    );
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
}
