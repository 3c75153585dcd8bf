//! rpc framing: each value is a 4-byte big-endian length followed by that many codec bytes.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, Codec};
use crate::rpc::Error;

/// Default largest rpc frame accepted (4 MiB). A length prefix above the limit is refused
/// before anything is allocated for it.
pub const DEFAULT_MAX_FRAME: u32 = 4 * 1024 * 1024;

/// What a buffer of outgoing frames starts with: a call's header and small values fit
/// without growing it step by step (each step a new allocation and a copy).
pub(crate) const SMALL_FRAMES: usize = 128;

/// Appends one rpc frame holding `value` to `dst`.
pub fn encode_frame<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    dst: &mut BytesMut,
) -> Result<(), Error> {
    let start = dst.len();
    dst.put_u32(0);
    codec::encode(codec, value, dst)?;
    let len = u32::try_from(dst.len() - start - 4).map_err(|_| Error::FrameTooLarge {
        len: u32::MAX,
        max: u32::MAX,
    })?;
    dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Something rpc frames can be read from: a qmux channel or its reading half.
pub(crate) trait ChunkSource {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>>;
}

impl ChunkSource for qtalk_mux::Channel {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        self.read_chunk(usize::MAX).await
    }
}

impl ChunkSource for qtalk_mux::ReadHalf {
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        self.read_chunk(usize::MAX).await
    }
}

/// Reassembles rpc frames from channel chunks, without copying frames that arrive whole. Bytes
/// past the last frame stay buffered, so a stream that continues as raw bytes loses nothing.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// Unconsumed tail of the last chunk (only while `assembly` is empty).
    head: Bytes,
    /// A frame being put together from several chunks.
    assembly: BytesMut,
    max: u32,
}

/// Splits one complete frame off the front of `buf`, if it holds one.
fn split_frame(buf: &[u8], max: u32) -> Result<Option<usize>, Error> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > max {
        return Err(Error::FrameTooLarge { len, max });
    }
    Ok((buf.len() >= 4 + len as usize).then_some(len as usize))
}

impl FrameReader {
    pub(crate) fn new(max: u32) -> Self {
        FrameReader {
            head: Bytes::new(),
            assembly: BytesMut::new(),
            max,
        }
    }

    /// The next frame's body; `None` on a clean end-of-stream between frames.
    pub(crate) async fn next<S: ChunkSource>(
        &mut self,
        src: &mut S,
    ) -> Result<Option<Bytes>, Error> {
        loop {
            if self.assembly.is_empty() {
                if let Some(len) = split_frame(&self.head, self.max)? {
                    self.head.advance(4);
                    return Ok(Some(self.head.split_to(len)));
                }
                if !self.head.is_empty() {
                    self.assembly.extend_from_slice(&self.head);
                    self.head = Bytes::new();
                }
            } else if let Some(len) = split_frame(&self.assembly, self.max)? {
                self.assembly.advance(4);
                return Ok(Some(self.assembly.split_to(len).freeze()));
            }
            match src.next_chunk().await? {
                Some(chunk) if self.assembly.is_empty() => self.head = chunk,
                Some(chunk) => self.assembly.extend_from_slice(&chunk),
                None if self.assembly.is_empty() => return Ok(None),
                None => return Err(Error::Truncated),
            }
        }
    }

    /// Decodes the next frame as a `T`; end-of-stream is [`Error::Truncated`].
    pub(crate) async fn receive<T: DeserializeOwned, S: ChunkSource>(
        &mut self,
        codec: &dyn Codec,
        src: &mut S,
    ) -> Result<T, Error> {
        match self.next(src).await? {
            Some(body) => Ok(codec::decode(codec, &body)?),
            None => Err(Error::Truncated),
        }
    }

    /// Moves buffered raw bytes into `dst`; returns how many.
    pub(crate) fn drain_into(&mut self, dst: &mut tokio::io::ReadBuf<'_>) -> usize {
        let src: &mut dyn Buf = if self.assembly.is_empty() {
            &mut self.head
        } else {
            &mut self.assembly
        };
        let n = src.remaining().min(dst.remaining());
        dst.put_slice(&src.chunk()[..n]);
        src.advance(n);
        n
    }

    /// Takes up to `max` buffered raw bytes, without copying the tail of a whole chunk.
    pub(crate) fn take_buffered(&mut self, max: usize) -> Option<Bytes> {
        let max = max.max(1);
        if !self.assembly.is_empty() {
            let n = self.assembly.len().min(max);
            return Some(self.assembly.split_to(n).freeze());
        }
        if !self.head.is_empty() {
            let n = self.head.len().min(max);
            return Some(self.head.split_to(n));
        }
        None
    }

    /// Raw bytes after the frames, without copying: what is buffered first, then chunks from
    /// `src`; `None` at end-of-stream.
    pub(crate) async fn read_chunk<S: ChunkSource>(
        &mut self,
        src: &mut S,
        max: usize,
    ) -> io::Result<Option<Bytes>> {
        if let Some(b) = self.take_buffered(max) {
            return Ok(Some(b));
        }
        match src.next_chunk().await? {
            Some(mut chunk) if chunk.len() > max.max(1) => {
                self.head = chunk.split_off(max.max(1));
                Ok(Some(chunk))
            }
            other => Ok(other),
        }
    }

    /// True while raw bytes received past the last frame wait to be read.
    pub(crate) fn has_buffered(&self) -> bool {
        !self.head.is_empty() || !self.assembly.is_empty()
    }
}

/// Reads every rpc frame out of `chunks`, as they would arrive on a channel, with `max` as the
/// frame limit: the entry point of the rpc frame reader's fuzz target (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_read_frames(chunks: Vec<Bytes>, max: u32) -> Result<Vec<Bytes>, Error> {
    struct Chunks(std::collections::VecDeque<Bytes>);
    impl ChunkSource for Chunks {
        async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
            Ok(self.0.pop_front())
        }
    }
    let mut src = Chunks(chunks.into());
    let mut reader = FrameReader::new(max);
    let mut frames = Vec::new();
    loop {
        // The source never waits, so one poll finishes each frame.
        let mut next = std::pin::pin!(reader.next(&mut src));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(next.as_mut(), &mut cx) {
            std::task::Poll::Ready(Ok(Some(f))) => frames.push(f),
            std::task::Poll::Ready(Ok(None)) => return Ok(frames),
            std::task::Poll::Ready(Err(e)) => return Err(e),
            std::task::Poll::Pending => unreachable!("the source is always ready"),
        }
    }
}
