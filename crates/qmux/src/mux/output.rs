//! The transport's writing side, shared by the writer task and by tasks that write inline.
//!
//! Frames leave the protocol state in order and are appended to `pending` under the output
//! lock, so whoever writes (an application task finding the transport idle, or the writer task)
//! preserves frame order. Writes never wait while a lock is held: a full transport leaves the
//! rest in `pending` for the writer task, which waits for writability.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use super::guard::guard;

/// Most buffers handed to one vectored write.
const MAX_IOV: usize = 64;
/// Small buffers are merged up to this size for transports without vectored writes.
const COALESCE_MAX: usize = 64 * 1024;

pub(crate) struct Output {
    /// `None` once the transport was released (so that pipes see end-of-stream).
    w: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    vectored: bool,
    /// Frames taken from the protocol state and not yet written, in order.
    pub(crate) pending: Vec<Bytes>,
    staging: BytesMut,
    /// Set once the transport was shut down.
    pub(crate) closed: bool,
    /// Bytes were written since the transport last finished a flush.
    pub(crate) unflushed: bool,
    /// The transport panicked (with this message): every later call fails.
    panicked: Option<std::sync::Arc<str>>,
}

impl Output {
    pub(crate) fn new<W: AsyncWrite + Send + 'static>(w: W) -> Self {
        let vectored = w.is_write_vectored();
        Output {
            w: Some(Box::pin(w)),
            vectored,
            pending: Vec::new(),
            staging: BytesMut::new(),
            closed: false,
            unflushed: false,
            panicked: None,
        }
    }

    /// Writes pending buffers until all are written and flushed (a flush still owed from an
    /// earlier call included), or the transport is full. Returns the bytes written by this
    /// call and whether the work is done.
    pub(crate) fn write_some(&mut self, cx: &mut Context<'_>) -> (usize, Poll<io::Result<()>>) {
        let mut written = 0;
        if self.w.is_none() {
            return (0, Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())));
        }
        while !self.pending.is_empty() {
            if !self.vectored {
                self.coalesce();
            }
            let Some(w) = self.w.as_mut() else { break };
            let pending = &self.pending;
            let res = if self.vectored && pending.len() > 1 {
                let slices: Vec<IoSlice<'_>> = pending
                    .iter()
                    .take(MAX_IOV)
                    .map(|b| IoSlice::new(b))
                    .collect();
                guard(&mut self.panicked, || {
                    w.as_mut().poll_write_vectored(cx, &slices)
                })
            } else {
                guard(&mut self.panicked, || {
                    w.as_mut().poll_write(cx, &pending[0])
                })
            };
            match res {
                Poll::Ready(Ok(0)) => {
                    return (written, Poll::Ready(Err(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => {
                    written += n;
                    self.unflushed = true;
                    self.advance(n);
                }
                Poll::Ready(Err(e)) => return (written, Poll::Ready(Err(e))),
                Poll::Pending => return (written, Poll::Pending),
            }
        }
        if !self.unflushed {
            return (written, Poll::Ready(Ok(())));
        }
        // Buffered transports (stdout, TLS) only deliver on flush.
        let res = match self.w.as_mut() {
            Some(w) => guard(&mut self.panicked, || w.as_mut().poll_flush(cx)),
            None => Poll::Ready(Ok(())),
        };
        if res.is_ready() {
            self.unflushed = false;
        }
        (written, res)
    }

    /// True when nothing is pending, owed a flush, or shut down: then no task waits on the
    /// transport's writability.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && !self.unflushed && !self.closed
    }

    /// Drops `n` written bytes from the front of `pending`.
    fn advance(&mut self, mut n: usize) {
        let mut done = 0;
        while n > 0 {
            let b = &mut self.pending[done];
            if b.len() <= n {
                n -= b.len();
                done += 1;
            } else {
                b.advance(n);
                n = 0;
            }
        }
        self.pending.drain(..done);
    }

    /// Merges leading small buffers so that plain writers don't pay a syscall per frame.
    fn coalesce(&mut self) {
        if self.pending.len() < 2 || self.pending[0].len() >= COALESCE_MAX {
            return;
        }
        let mut k = 0;
        self.staging.clear();
        while k < self.pending.len() && self.staging.len() + self.pending[k].len() <= COALESCE_MAX {
            self.staging.extend_from_slice(&self.pending[k]);
            k += 1;
        }
        if k > 1 {
            self.pending.drain(..k);
            self.pending.insert(0, self.staging.split().freeze());
        }
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.w.as_mut() {
            Some(w) => guard(&mut self.panicked, || w.as_mut().poll_shutdown(cx)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Drops the transport's writing side, closing it (a panic in its drop is caught: the
    /// session is ending anyway).
    pub(crate) fn release(&mut self) {
        self.closed = true;
        self.pending.clear();
        let w = self.w.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(w)));
    }
}
