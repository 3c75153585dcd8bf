//! Codecs: how rpc values become bytes. [`Json`] and [`Cbor`] match the Go reference's output
//! byte for byte; any other format can implement [`Codec`].
//!
//! A codec encodes and decodes *one value* at a time; the rpc layer adds the 4-byte length
//! prefix ([`crate::rpc`] framing). Codecs are used as `Arc<dyn Codec>`, so calls, responders
//! and peers are not generic; [`encode`] and [`decode`] give the typed front end.
//!
//! [`Value`] is Go's `any`: it decodes whatever a peer sends and re-encodes it unchanged.
//! [`Binary`] is Go's `[]byte` (base64 text in JSON, a byte string in CBOR). A failed encode
//! leaves `dst` as it was; decoding never panics, whatever the input.

use bytes::BytesMut;
use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::Serialize;

mod cbor;
mod error;
mod json;
mod value;

pub use cbor::Cbor;

/// What the constructors of [`Caller`](crate::rpc::Caller), [`Peer`](crate::rpc::Peer) and
/// [`Server`](crate::rpc::Server) take as their codec: any [`Codec`] value (`Json`, `Cbor`),
/// or one already shared as `Arc<dyn Codec>`.
pub trait IntoCodec {
    /// The codec, shared.
    fn into_codec(self) -> std::sync::Arc<dyn Codec>;
}

impl<C: Codec> IntoCodec for C {
    fn into_codec(self) -> std::sync::Arc<dyn Codec> {
        std::sync::Arc::new(self)
    }
}

impl IntoCodec for std::sync::Arc<dyn Codec> {
    fn into_codec(self) -> std::sync::Arc<dyn Codec> {
        self
    }
}
pub use json::Json;
pub use value::{Binary, Value};

/// A value format for rpc frames. Object safe: typed values pass through `erased_serde`.
pub trait Codec: Send + Sync + 'static {
    /// Short lowercase name (`"json"`, `"cbor"`).
    fn name(&self) -> &'static str;

    /// Appends the encoding of `value` to `dst` (unchanged on error).
    fn encode_erased(
        &self,
        value: &dyn erased_serde::Serialize,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError>;

    /// Decodes the single value held in `src` by handing a deserializer over it to `visit`.
    fn decode_erased(
        &self,
        src: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError>;

    /// Which built-in codec this is, so that [`encode`] and [`decode`] can call it without
    /// type erasure (which boxes every value decoded). Other codecs keep the default, `None`.
    #[doc(hidden)]
    fn builtin(&self) -> Option<Builtin> {
        None
    }
}

/// The built-in codecs, as [`Codec::builtin`] names them.
#[doc(hidden)]
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// [`Json`].
    Json,
    /// [`Cbor`].
    Cbor,
}

/// Encodes `value` with `codec`, appending to `dst`.
pub fn encode<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    match codec.builtin() {
        Some(Builtin::Json) => json::encode(value, dst),
        Some(Builtin::Cbor) => cbor::encode(value, dst),
        None => codec.encode_erased(&value, dst),
    }
}

/// Decodes one `T` from exactly `src` with `codec`.
pub fn decode<T: DeserializeOwned>(codec: &dyn Codec, src: &[u8]) -> Result<T, CodecError> {
    decode_seed(codec, src, std::marker::PhantomData::<T>)
}

/// [`decode`] through a seed (which can carry state in and out of the decoding).
pub(crate) fn decode_seed<S, T>(codec: &dyn Codec, src: &[u8], seed: S) -> Result<T, CodecError>
where
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    match codec.builtin() {
        Some(Builtin::Json) => return json::decode(src, seed),
        Some(Builtin::Cbor) => return cbor::decode(src, seed),
        None => {}
    }
    let mut seed = Some(seed);
    let mut out = None;
    codec.decode_erased(src, &mut |de| {
        if let Some(seed) = seed.take() {
            out = Some(seed.deserialize(de)?);
        }
        Ok(())
    })?;
    out.ok_or_else(|| CodecError::Decode("no value decoded".into()))
}

/// A value could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Encoding failed (e.g. a map with non-string keys in JSON).
    #[error("encode: {0}")]
    Encode(String),
    /// The bytes are not a valid value of the expected type.
    #[error("decode: {0}")]
    Decode(String),
}
