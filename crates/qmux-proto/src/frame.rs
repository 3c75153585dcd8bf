//! qmux frames: the seven messages of the protocol and their exact byte encoding.
//!
//! Every frame starts with a one-byte message type followed by big-endian `u32` fields. Every frame
//! but [`Frame::Open`] names the channel by the *receiver's* id.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// Message type of [`Frame::Open`].
pub const MSG_OPEN: u8 = 100;
/// Message type of [`Frame::OpenConfirm`].
pub const MSG_OPEN_CONFIRM: u8 = 101;
/// Message type of [`Frame::OpenFailure`].
pub const MSG_OPEN_FAILURE: u8 = 102;
/// Message type of [`Frame::WindowAdjust`].
pub const MSG_WINDOW_ADJUST: u8 = 103;
/// Message type of [`Frame::Data`].
pub const MSG_DATA: u8 = 104;
/// Message type of [`Frame::Eof`].
pub const MSG_EOF: u8 = 105;
/// Message type of [`Frame::Close`].
pub const MSG_CLOSE: u8 = 106;

/// Size of a DATA frame header: type, recipient id, payload length.
pub const DATA_HEADER_LEN: usize = 9;

/// Smallest max packet a peer may advertise (the reference refuses smaller values).
pub const MIN_MAX_PACKET: u32 = 9;
/// Largest max packet a peer may advertise (2^31).
pub const MAX_MAX_PACKET: u32 = 1 << 31;

/// One qmux message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Ask the peer to open a channel.
    Open {
        /// The opener's id for the new channel.
        sender_id: u32,
        /// Bytes the opener lets the peer send before a window adjust.
        window: u32,
        /// Largest DATA payload the opener accepts.
        max_packet: u32,
    },
    /// Accept a channel the peer asked to open.
    OpenConfirm {
        /// The opener's id (from its OPEN).
        recipient_id: u32,
        /// The confirming side's id for the channel.
        sender_id: u32,
        /// Bytes the confirming side lets the opener send.
        window: u32,
        /// Largest DATA payload the confirming side accepts.
        max_packet: u32,
    },
    /// Refuse a channel the peer asked to open.
    OpenFailure {
        /// The opener's id (from its OPEN).
        recipient_id: u32,
    },
    /// Grant the peer more send window.
    WindowAdjust {
        /// The receiver's id for the channel.
        recipient_id: u32,
        /// Bytes added to the window.
        bytes: u32,
    },
    /// Channel payload.
    Data {
        /// The receiver's id for the channel.
        recipient_id: u32,
        /// The payload; its length is the frame's length field.
        payload: Bytes,
    },
    /// The sender will send no more data on the channel.
    Eof {
        /// The receiver's id for the channel.
        recipient_id: u32,
    },
    /// The sender is done with the channel.
    Close {
        /// The receiver's id for the channel.
        recipient_id: u32,
    },
}

/// Fixed size (type byte included) of the frame with message type `kind`, not counting a DATA
/// payload; `None` for an unknown type.
pub fn header_len(kind: u8) -> Option<usize> {
    match kind {
        MSG_OPEN => Some(13),
        MSG_OPEN_CONFIRM => Some(17),
        MSG_OPEN_FAILURE | MSG_EOF | MSG_CLOSE => Some(5),
        MSG_WINDOW_ADJUST | MSG_DATA => Some(9),
        _ => None,
    }
}

/// Human-readable name of a message type, for errors and logs.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        MSG_OPEN => "OPEN",
        MSG_OPEN_CONFIRM => "OPEN_CONFIRM",
        MSG_OPEN_FAILURE => "OPEN_FAILURE",
        MSG_WINDOW_ADJUST => "WINDOW_ADJUST",
        MSG_DATA => "DATA",
        MSG_EOF => "EOF",
        MSG_CLOSE => "CLOSE",
        _ => "UNKNOWN",
    }
}

impl Frame {
    /// The message type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Open { .. } => MSG_OPEN,
            Frame::OpenConfirm { .. } => MSG_OPEN_CONFIRM,
            Frame::OpenFailure { .. } => MSG_OPEN_FAILURE,
            Frame::WindowAdjust { .. } => MSG_WINDOW_ADJUST,
            Frame::Data { .. } => MSG_DATA,
            Frame::Eof { .. } => MSG_EOF,
            Frame::Close { .. } => MSG_CLOSE,
        }
    }

    /// The receiver's channel id, or `None` for [`Frame::Open`].
    pub fn recipient_id(&self) -> Option<u32> {
        match *self {
            Frame::Open { .. } => None,
            Frame::OpenConfirm { recipient_id, .. }
            | Frame::OpenFailure { recipient_id }
            | Frame::WindowAdjust { recipient_id, .. }
            | Frame::Data { recipient_id, .. }
            | Frame::Eof { recipient_id }
            | Frame::Close { recipient_id } => Some(recipient_id),
        }
    }

    /// Number of bytes [`Frame::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::Data { payload, .. } => DATA_HEADER_LEN + payload.len(),
            other => header_len(other.kind()).unwrap_or(0),
        }
    }

    /// Appends the frame's exact wire bytes to `dst`.
    ///
    /// # Panics
    /// If a DATA payload is longer than `u32::MAX` bytes.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_u8(self.kind());
        match *self {
            Frame::Open {
                sender_id,
                window,
                max_packet,
            } => {
                dst.put_u32(sender_id);
                dst.put_u32(window);
                dst.put_u32(max_packet);
            }
            Frame::OpenConfirm {
                recipient_id,
                sender_id,
                window,
                max_packet,
            } => {
                dst.put_u32(recipient_id);
                dst.put_u32(sender_id);
                dst.put_u32(window);
                dst.put_u32(max_packet);
            }
            Frame::WindowAdjust {
                recipient_id,
                bytes,
            } => {
                dst.put_u32(recipient_id);
                dst.put_u32(bytes);
            }
            Frame::Data {
                recipient_id,
                ref payload,
            } => {
                let len = u32::try_from(payload.len()).expect("DATA payload over 4 GiB");
                dst.put_u32(recipient_id);
                dst.put_u32(len);
                dst.put_slice(payload);
            }
            Frame::OpenFailure { recipient_id }
            | Frame::Eof { recipient_id }
            | Frame::Close { recipient_id } => dst.put_u32(recipient_id),
        }
    }

    /// Decodes one whole frame from the front of `src`.
    ///
    /// Returns `Ok(None)` (consuming nothing) when `src` holds only part of a frame. A DATA length
    /// above `max_payload` is refused as soon as its header is in, before its payload is awaited.
    /// This is the standalone decoder for tools and tests; a [`Session`](crate::Session) decodes
    /// incrementally and checks every frame against its channel state.
    pub fn decode(src: &mut BytesMut, max_payload: u32) -> Result<Option<Frame>, ProtocolError> {
        let Some(&kind) = src.first() else {
            return Ok(None);
        };
        let head = header_len(kind).ok_or(ProtocolError::UnknownFrameType { kind })?;
        if src.len() < head {
            return Ok(None);
        }
        if kind == MSG_DATA {
            let recipient_id = read_u32(src, 1);
            let len = read_u32(src, 5);
            if len > max_payload {
                return Err(ProtocolError::PacketTooLarge {
                    channel: recipient_id,
                    len,
                    max: max_payload,
                });
            }
            if src.len() < head + len as usize {
                return Ok(None);
            }
            src.advance(head);
            let payload = src.split_to(len as usize).freeze();
            return Ok(Some(Frame::Data {
                recipient_id,
                payload,
            }));
        }
        let frame = parse_fixed(kind, &src[..head]);
        src.advance(head);
        Ok(Some(frame))
    }
}

/// Parses a fixed-size (non-DATA) frame whose header bytes are all in `b`.
pub(crate) fn parse_fixed(kind: u8, b: &[u8]) -> Frame {
    match kind {
        MSG_OPEN => Frame::Open {
            sender_id: read_u32(b, 1),
            window: read_u32(b, 5),
            max_packet: read_u32(b, 9),
        },
        MSG_OPEN_CONFIRM => Frame::OpenConfirm {
            recipient_id: read_u32(b, 1),
            sender_id: read_u32(b, 5),
            window: read_u32(b, 9),
            max_packet: read_u32(b, 13),
        },
        MSG_OPEN_FAILURE => Frame::OpenFailure {
            recipient_id: read_u32(b, 1),
        },
        MSG_WINDOW_ADJUST => Frame::WindowAdjust {
            recipient_id: read_u32(b, 1),
            bytes: read_u32(b, 5),
        },
        MSG_EOF => Frame::Eof {
            recipient_id: read_u32(b, 1),
        },
        MSG_CLOSE => Frame::Close {
            recipient_id: read_u32(b, 1),
        },
        _ => unreachable!("parse_fixed called for message type {kind}"),
    }
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a DATA frame header (type, recipient, length) to `dst`.
pub fn encode_data_header(recipient_id: u32, len: u32, dst: &mut BytesMut) {
    dst.reserve(DATA_HEADER_LEN);
    dst.put_u8(MSG_DATA);
    dst.put_u32(recipient_id);
    dst.put_u32(len);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(f: Frame) {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        assert_eq!(b.len(), f.encoded_len());
        let mut src = b.clone();
        let back = Frame::decode(&mut src, u32::MAX).unwrap().unwrap();
        assert!(src.is_empty());
        assert_eq!(back, f);
        let mut again = BytesMut::new();
        back.encode(&mut again);
        assert_eq!(again, b);
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(Frame::Open {
            sender_id: 7,
            window: 1 << 30,
            max_packet: MAX_MAX_PACKET,
        });
        roundtrip(Frame::OpenConfirm {
            recipient_id: 1,
            sender_id: 2,
            window: 3,
            max_packet: 4,
        });
        roundtrip(Frame::OpenFailure { recipient_id: 9 });
        roundtrip(Frame::WindowAdjust {
            recipient_id: 1,
            bytes: u32::MAX,
        });
        roundtrip(Frame::Data {
            recipient_id: 3,
            payload: Bytes::from_static(b"hello"),
        });
        roundtrip(Frame::Data {
            recipient_id: 3,
            payload: Bytes::new(),
        });
        roundtrip(Frame::Eof { recipient_id: 4 });
        roundtrip(Frame::Close { recipient_id: 5 });
    }

    #[test]
    fn exact_bytes_of_open() {
        let mut b = BytesMut::new();
        Frame::Open {
            sender_id: 0,
            window: 0x4000_0000,
            max_packet: 0x0100_0000,
        }
        .encode(&mut b);
        assert_eq!(&b[..], &[0x64, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x01, 0, 0, 0]);
    }

    #[test]
    fn partial_input_waits() {
        let mut b = BytesMut::new();
        Frame::Data {
            recipient_id: 1,
            payload: Bytes::from_static(b"abcdef"),
        }
        .encode(&mut b);
        for cut in 0..b.len() {
            let mut part = BytesMut::from(&b[..cut]);
            assert_eq!(Frame::decode(&mut part, 100).unwrap(), None);
            assert_eq!(part.len(), cut);
        }
    }

    #[test]
    fn oversized_data_refused_from_header_alone() {
        let mut b = BytesMut::new();
        encode_data_header(0, 1_000_000, &mut b);
        let err = Frame::decode(&mut b, 1024).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::PacketTooLarge { len: 1_000_000, .. }
        ));
    }

    #[test]
    fn unknown_type_refused() {
        let mut b = BytesMut::from(&[0x07u8, 0, 0][..]);
        assert_eq!(
            Frame::decode(&mut b, 100).unwrap_err(),
            ProtocolError::UnknownFrameType { kind: 7 }
        );
    }
}
