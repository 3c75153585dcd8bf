//! The error type the codec serializers and deserializers hand to serde.

use std::fmt;

/// A serde error carrying only a message; turned into a [`super::CodecError`] at the codec edge.
/// Boxed, so that it is one pointer: every `Result` the decoder passes around stays small
/// (a `String` made them spill to memory on every item decoded, as serde_json's boxed error
/// avoids too).
#[derive(Debug)]
#[allow(clippy::box_collection)] // one thin pointer, on purpose (above)
pub(crate) struct Error(Box<String>);

impl Error {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Error(Box::new(msg.into()))
    }

    /// The message.
    pub(crate) fn into_message(self) -> String {
        *self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl serde::ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}
