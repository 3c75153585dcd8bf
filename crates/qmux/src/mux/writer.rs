//! The writer task: writes what the handles queued (unless a write path wrote it inline),
//! and at the end flushes what a local close left queued and shuts the transport down.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;

use super::{guard, Shared, INLINE_MAX_CHANNELS};
use crate::error::Error;

/// Takes frames from the protocol state and writes them until none are left or the
/// transport is full (then `Pending`, registered with `cx`).
fn poll_drain(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut wake = Vec::new();
    let res = {
        let mut out = shared.out();
        loop {
            if out.pending.is_empty() {
                let mut inner = shared.inner();
                // One batch at a time: a frame queued meanwhile (a call's, beside bulk data)
                // waits behind one batch, not behind everything queued.
                inner
                    .proto
                    .poll_transmit_up_to(&mut out.pending, shared.config.write_batch);
                drop(inner);
                if out.pending.is_empty() && !out.unflushed {
                    break Poll::Ready(Ok(()));
                }
            }
            let (written, res) = out.write_some(cx);
            if written > 0 {
                shared.transmitted(written, &mut wake);
            }
            match res {
                Poll::Ready(Ok(())) => {}
                other => break other,
            }
        }
    };
    for w in wake {
        w.wake();
    }
    res
}

pub(super) async fn write_loop(shared: Arc<Shared>, reader_done: CancellationToken) {
    loop {
        let res = tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            r = poll_fn(|cx| poll_drain(&shared, cx)) => r,
        };
        if let Err(e) = res {
            shared.fail(guard::transport_error(e));
            break;
        }
        tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            _ = shared.writer.notified() => {}
        }
        // With many channels busy, let the tasks woken with this one queue their frames too,
        // so that one write carries them all (a lone bulk writer gains nothing by waiting).
        let many = shared.inner().proto.channel_count() > INLINE_MAX_CHANNELS;
        if many {
            tokio::task::yield_now().await;
        }
    }
    // After a local close, deliver what was queued (the rest of an interrupted write first),
    // then close the transport. After any other end, just close it.
    let (closed_locally, last) = {
        let mut inner = shared.inner();
        let last = std::mem::take(&mut inner.final_frames);
        (matches!(inner.error, Some(Error::Closed)), last)
    };
    let flush = poll_fn(|cx| {
        let mut out = shared.out();
        if closed_locally {
            if !last.is_empty() && !out.closed {
                out.pending.extend(last.iter().cloned());
                out.closed = true; // no more inline writes
            }
            match out.write_some(cx).1 {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        out.closed = true;
        out.pending.clear();
        out.poll_shutdown(cx)
    });
    let _ = tokio::time::timeout(shared.config.close_timeout, flush).await;
    shared.out().release();
    reader_done.cancelled().await;
    shared.finished.cancel();
}
