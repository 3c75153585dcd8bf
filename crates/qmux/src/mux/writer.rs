//! The writer task: writes what the handles queued (unless a write path wrote it inline),
//! and at the end flushes what a local close left queued and shuts the transport down.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
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

/// Writers inside `block_in_place` now, process-wide.
static OFFLOADED: AtomicUsize = AtomicUsize::new(0);

/// [`poll_drain`], inside `block_in_place` when much is queued (see
/// [`ConfigBuilder::write_offload`](crate::ConfigBuilder::write_offload)).
fn poll_drain_offloaded(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let min = shared.config.write_offload;
    if min == 0 || shared.inner().proto.unsent() < min || !multi_thread() {
        return poll_drain(shared, cx);
    }
    let Some(_slot) = OffloadSlot::take() else {
        return poll_drain(shared, cx);
    };
    #[cfg(test)]
    tests::OFFLOADS.fetch_add(1, Ordering::Relaxed);
    tokio::task::block_in_place(|| poll_drain(shared, cx))
}

/// Whether this task runs on tokio's multi-thread runtime (where `block_in_place` works).
fn multi_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// One of the [`OFFLOADED`] places, given back on drop.
struct OffloadSlot;

impl OffloadSlot {
    fn take() -> Option<OffloadSlot> {
        static MAX: OnceLock<usize> = OnceLock::new();
        let max = *MAX.get_or_init(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        OFFLOADED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| OffloadSlot)
    }
}

impl Drop for OffloadSlot {
    fn drop(&mut self) {
        OFFLOADED.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) async fn write_loop(shared: Arc<Shared>, reader_done: CancellationToken) {
    loop {
        let res = tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            r = poll_fn(|cx| poll_drain_offloaded(&shared, cx)) => r,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::{Config, Session};

    /// Writes that went through `block_in_place`, in this test binary.
    pub(super) static OFFLOADS: AtomicUsize = AtomicUsize::new(0);

    /// Taken by the tests that offload, so that each sees only its own writers.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Moves `total` bytes of a pattern over one channel between two sessions on an
    /// in-memory pipe, and checks every byte.
    async fn transfer(total: usize) {
        let config = || Config::builder().write_offload(64 * 1024).build().unwrap();
        let (x, y) = tokio::io::duplex(256 * 1024);
        let (a, b) = (Session::new(x, config()), Session::new(y, config()));
        let accept = tokio::spawn(async move {
            let mut ch = b.accept().await.expect("a channel");
            let mut got = vec![0u8; total];
            ch.read_exact(&mut got).await.unwrap();
            got
        });
        let mut ch = a.open().await.unwrap();
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        ch.write_all(&data).await.unwrap();
        let got = accept.await.unwrap();
        assert!(got == data, "the bytes arrived changed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_writes_move_off_the_worker_and_arrive_whole() {
        let _serial = SERIAL.lock().await;
        let before = OFFLOADS.load(Ordering::Relaxed);
        transfer(16 << 20).await;
        assert!(
            OFFLOADS.load(Ordering::Relaxed) > before,
            "no write was offloaded"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_bulk_sessions_than_cores_all_arrive_whole() {
        // Past one offloaded writer per core the others write in place; all finish, and
        // every place is given back.
        let _serial = SERIAL.lock().await;
        let sessions = 2 * std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
        let transfers: Vec<_> = (0..sessions)
            .map(|_| tokio::spawn(transfer(8 << 20)))
            .collect();
        for t in transfers {
            t.await.unwrap();
        }
        assert_eq!(super::OFFLOADED.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn the_current_thread_runtime_writes_in_place() {
        // block_in_place would panic here (and the transfer never end).
        transfer(4 << 20).await;
    }
}
