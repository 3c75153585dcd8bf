//! Errors of the protocol core.

use crate::frame::kind_name;

/// A peer broke the protocol. Every variant is fatal to the session and names its cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The first byte of a frame is not one of the seven message types.
    #[error("qmux: unknown message type {kind}")]
    UnknownFrameType {
        /// The byte received.
        kind: u8,
    },
    /// A frame names a channel id that is not in use.
    #[error("qmux: {} for unknown channel {channel}", kind_name(*.kind))]
    UnknownChannel {
        /// The message type.
        kind: u8,
        /// The id named by the frame.
        channel: u32,
    },
    /// A DATA payload is longer than the max packet advertised for the channel.
    #[error("qmux: DATA of {len} bytes on channel {channel} exceeds max packet {max}")]
    PacketTooLarge {
        /// The receiver's channel id.
        channel: u32,
        /// The frame's length field.
        len: u32,
        /// The max packet advertised.
        max: u32,
    },
    /// A DATA payload is longer than the window left on the channel.
    #[error("qmux: DATA of {len} bytes on channel {channel} exceeds remaining window {window}")]
    WindowExceeded {
        /// The receiver's channel id.
        channel: u32,
        /// The frame's length field.
        len: u32,
        /// Window left when the frame arrived.
        window: u32,
    },
    /// A WINDOW_ADJUST would take the send window beyond 2^32-1.
    #[error("qmux: WINDOW_ADJUST of {add} on channel {channel} overflows window {window}")]
    WindowOverflow {
        /// The receiver's channel id.
        channel: u32,
        /// Window before the adjust.
        window: u32,
        /// Bytes the frame adds.
        add: u32,
    },
    /// A second CLOSE arrived for one channel.
    #[error("qmux: duplicate CLOSE for channel {channel}")]
    DuplicateClose {
        /// The receiver's channel id.
        channel: u32,
    },
    /// OPEN_CONFIRM or OPEN_FAILURE for a channel that is not waiting for one.
    #[error("qmux: unexpected {} for channel {channel}", kind_name(*.kind))]
    UnexpectedOpenReply {
        /// The message type.
        kind: u8,
        /// The receiver's channel id.
        channel: u32,
    },
    /// A channel frame arrived before the channel was confirmed.
    #[error("qmux: {} for channel {channel} before it was confirmed", kind_name(*.kind))]
    NotYetOpen {
        /// The message type.
        kind: u8,
        /// The receiver's channel id.
        channel: u32,
    },
    /// OPEN_CONFIRM advertises a max packet outside 9..=2^31.
    #[error("qmux: invalid max packet {max_packet} in OPEN_CONFIRM for channel {channel}")]
    InvalidMaxPacket {
        /// The receiver's channel id.
        channel: u32,
        /// The advertised value.
        max_packet: u32,
    },
    /// The byte stream ended inside a frame.
    #[error("qmux: stream ended inside a frame ({missing} more bytes expected)")]
    Truncated {
        /// How many bytes of the frame were still missing, at least.
        missing: usize,
    },
}

/// An operation on one channel could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The id is not a channel of this session.
    #[error("qmux: no such channel")]
    UnknownChannel,
    /// The channel is not open (still opening, or refused).
    #[error("qmux: channel is not open")]
    NotOpen,
    /// Writing after this side sent EOF.
    #[error("qmux: channel write side is closed")]
    WriteClosed,
    /// The channel is closed (by either side).
    #[error("qmux: channel is closed")]
    Closed,
    /// The session has ended.
    #[error("qmux: session has ended")]
    SessionEnded,
}
