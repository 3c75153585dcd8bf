//! The locked view of a session's state: releasing it turns protocol events into wake-ups,
//! and on write paths writes small amounts inline when the transport is idle.

use std::sync::MutexGuard;
use std::task::{Context, Poll, Waker};

use super::{Inner, Shared, INLINE_MAX_CHANNELS};

/// Largest amount of queued frames written inline by the task that queued them.
const INLINE_MAX: usize = 16 * 1024;

/// A locked view of the session state. Releasing it (dropping it, or [`Locked::flush`])
/// turns protocol events into wake-ups and fires them once unlocked. Dropping never writes:
/// frames it finds queued are left to the writer task. Write paths call [`Locked::flush`]
/// instead, which writes small amounts inline when the transport is idle (saving a task
/// wake-up per exchange).
pub(crate) struct Locked<'a> {
    guard: Option<MutexGuard<'a, Inner>>,
    shared: &'a Shared,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        self.guard.as_ref().expect("locked")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        self.guard.as_mut().expect("locked")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.release(false);
    }
}

impl Locked<'_> {
    /// Unlocks, writing the frames queued so far from this task when they are few and the
    /// transport is idle, else waking the writer task for them. Only the session's write
    /// paths (channel writes and closes, opens, accepts, the reader's replies) call it.
    pub(crate) fn flush(mut self) {
        self.release(true);
    }

    fn release(&mut self, inline: bool) {
        let Some(mut g) = self.guard.take() else {
            return;
        };
        g.dispatch(self.shared.config.accept_timeout);
        let mut wake = std::mem::take(&mut g.to_wake);
        if g.proto.has_transmit() && !inline {
            drop(g);
            self.shared.writer.notify_one();
        } else if g.proto.has_transmit() {
            // With few channels busy, small writes (control frames, rpc messages) go out from
            // this task at once, saving a task wake-up per exchange. Bulk data written from a
            // task, and traffic of many channels, is left to the writer task: frames of many
            // channels then share one vectored write.
            // Bulk data written from outside the runtime's tasks (a `block_on` future, such as
            // `#[tokio::main]`'s) also goes out inline: waking the writer task from there costs
            // a hop to another thread per write. From a task, the woken writer runs next on
            // the same thread and batches what the task queued meanwhile.
            let small = (g.proto.unsent() <= INLINE_MAX || tokio::task::try_id().is_none())
                && g.proto.channel_count() <= INLINE_MAX_CHANNELS;
            let out = if small {
                self.shared.out.try_lock().ok()
            } else {
                None
            };
            match out {
                // The transport is idle (the writer task waits on nothing): write from this
                // task instead of waking the writer. Polling with a no-op waker is harmless
                // only then, as it would replace a waiting writer's registration.
                Some(mut out) if out.is_idle() => {
                    g.proto
                        .poll_transmit_up_to(&mut out.pending, self.shared.config.write_batch);
                    let more = g.proto.has_transmit();
                    drop(g);
                    let mut cx = Context::from_waker(Waker::noop());
                    let (written, res) = out.write_some(&mut cx);
                    drop(out);
                    if written > 0 {
                        self.shared.transmitted(written, &mut wake);
                    }
                    if more || !matches!(res, Poll::Ready(Ok(()))) {
                        // More than a batch, a full transport or an error: the writer task
                        // takes over.
                        self.shared.writer.notify_one();
                    }
                }
                busy => {
                    // Busy or not ours to use: let go of it before waking its user.
                    drop(busy);
                    drop(g);
                    self.shared.writer.notify_one();
                }
            }
        } else {
            drop(g);
        }
        for w in wake {
            w.wake();
        }
    }
}

impl Shared {
    /// Locks the session state.
    pub(crate) fn lock(&self) -> Locked<'_> {
        let guard = self.inner();
        Locked {
            guard: Some(guard),
            shared: self,
        }
    }
}
