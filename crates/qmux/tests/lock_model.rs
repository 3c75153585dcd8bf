//! A model check (shuttle) of the qmux driver's two-lock write protocol, as `mux/locked.rs`,
//! `mux/writer.rs` and `mux/output.rs` implement it:
//!
//! - `inner` holds the protocol state, whose queued frames leave it in order
//!   (`poll_transmit`); `out` holds the transport's writing side with `pending` frames.
//! - Lock order is `out` before `inner`. A task holding `inner` only ever `try_lock`s `out`
//!   (`Locked::release`): when it gets `out` and the transport is idle and the queue small, it
//!   moves the queued frames to `pending` while holding both, unlocks `inner`, writes what the
//!   transport takes, and wakes the writer task if anything is left. Otherwise it wakes the
//!   writer task (a `Notify`, whose permit survives a wake with no one waiting).
//! - The writer task (`poll_drain`) locks `out`, then `inner` to take the queued frames,
//!   unlocks `inner`, writes everything, and waits for the next wake.
//!
//! Every interleaving shuttle explores (randomly, and with PCT's bounded-depth priorities,
//! thousands of schedules each) must write every frame exactly once and in queue order,
//! without deadlock, and must never leave frames behind while the writer sleeps with no
//! wake-up owed to it (a lost wake-up).

use std::collections::VecDeque;

use shuttle::sync::atomic::{AtomicBool, Ordering};
use shuttle::sync::{Arc, Condvar, Mutex};
use shuttle::thread;

/// The protocol state: frames queued in order, numbered as they are queued.
#[derive(Default)]
struct Inner {
    queued: VecDeque<u32>,
    next: u32,
}

/// The writing side: frames taken from `inner` and not written yet, and the wire.
#[derive(Default)]
struct Out {
    pending: VecDeque<u32>,
    wire: Vec<u32>,
}

impl Out {
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Writes what the transport takes: everything for the writer task (it waits for
    /// writability), at most `limit` frames for an inline write (a full transport).
    fn write_some(&mut self, limit: usize) -> bool {
        let mut n = 0;
        while n < limit {
            match self.pending.pop_front() {
                Some(f) => {
                    self.wire.push(f);
                    n += 1;
                }
                None => break,
            }
        }
        self.pending.is_empty()
    }
}

/// tokio's `Notify::notify_one`/`notified`: one stored permit; tracks whether the writer is
/// asleep, for the lost-wake-up check.
#[derive(Default)]
struct Wake {
    state: Mutex<WakeState>,
    cv: Condvar,
}

#[derive(Default)]
struct WakeState {
    permit: bool,
    sleeping: bool,
}

impl Wake {
    fn notify_one(&self) {
        let mut s = self.state.lock().unwrap();
        s.permit = true;
        self.cv.notify_one();
    }

    fn notified(&self) {
        let mut s = self.state.lock().unwrap();
        s.sleeping = true;
        while !s.permit {
            s = self.cv.wait(s).unwrap();
        }
        s.permit = false;
        s.sleeping = false;
    }
}

struct Shared {
    inner: Mutex<Inner>,
    out: Mutex<Out>,
    writer: Wake,
    done: AtomicBool,
}

/// Most frames an inline write may move (`INLINE_MAX`, in frames here).
const INLINE_MAX: usize = 2;

impl Shared {
    /// An application task queueing one frame and releasing the lock (`Locked::flush`).
    fn queue_and_flush(&self, inline_limit: usize, buggy: bool) {
        let mut g = self.inner.lock().unwrap();
        let id = g.next;
        g.next += 1;
        g.queued.push_back(id);
        let small = g.queued.len() <= INLINE_MAX;
        let out = if small {
            self.out.try_lock().ok()
        } else {
            None
        };
        match out {
            Some(mut out) if out.is_idle() => {
                out.pending.extend(g.queued.drain(..));
                drop(g);
                let all = out.write_some(inline_limit);
                drop(out);
                if !all && !buggy {
                    self.writer.notify_one();
                }
            }
            busy => {
                drop(busy);
                drop(g);
                self.writer.notify_one();
            }
        }
    }

    /// One pass of the writer task (`poll_drain`).
    fn drain(&self) {
        let mut out = self.out.lock().unwrap();
        loop {
            if out.pending.is_empty() {
                let mut inner = self.inner.lock().unwrap();
                out.pending.extend(inner.queued.drain(..));
                drop(inner);
                if out.pending.is_empty() {
                    return;
                }
            }
            out.write_some(usize::MAX);
        }
    }
}

fn run(inline_limits: [usize; 2], frames_each: usize) {
    run_with(inline_limits, frames_each, false)
}

fn run_buggy(inline_limits: [usize; 2], frames_each: usize) {
    run_with(inline_limits, frames_each, true)
}

fn run_with(inline_limits: [usize; 2], frames_each: usize, buggy: bool) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner::default()),
        out: Mutex::new(Out::default()),
        writer: Wake::default(),
        done: AtomicBool::new(false),
    });
    let writer = {
        let s = shared.clone();
        thread::spawn(move || loop {
            s.drain();
            if s.done.load(Ordering::SeqCst) {
                // As the driver's writer does at the session's end: deliver what is queued.
                s.drain();
                return;
            }
            s.writer.notified();
        })
    };
    let apps: Vec<_> = inline_limits
        .iter()
        .map(|&limit| {
            let s = shared.clone();
            thread::spawn(move || {
                for _ in 0..frames_each {
                    s.queue_and_flush(limit, buggy);
                }
            })
        })
        .collect();
    for a in apps {
        a.join().unwrap();
    }
    // Every application task is done. If the writer sleeps with no wake-up owed, nothing may
    // be left unwritten.
    {
        // In the driver's lock order (the wake-up's own lock last): a consistent snapshot.
        let out = shared.out.lock().unwrap();
        let inner = shared.inner.lock().unwrap();
        let wake = shared.writer.state.lock().unwrap();
        if wake.sleeping && !wake.permit {
            assert!(
                inner.queued.is_empty() && out.pending.is_empty(),
                "lost wake-up: {} queued and {} pending while the writer sleeps",
                inner.queued.len(),
                out.pending.len()
            );
        }
    }
    shared.done.store(true, Ordering::SeqCst);
    shared.writer.notify_one();
    writer.join().unwrap();
    let out = shared.out.lock().unwrap();
    let total = (inline_limits.len() * frames_each) as u32;
    assert_eq!(
        out.wire,
        (0..total).collect::<Vec<_>>(),
        "every frame written once, in queue order"
    );
}

/// Schedules explored per check.
const ITERATIONS: usize = 5_000;

#[test]
fn inline_writes_and_the_writer_task_keep_frame_order_and_lose_no_wake_up() {
    // One task whose inline writes the transport takes whole, one whose inline writes find it
    // full after one frame (the rest is left to the writer task).
    shuttle::check_random(|| run([usize::MAX, 1], 3), ITERATIONS);
    shuttle::check_pct(|| run([usize::MAX, 1], 3), ITERATIONS, 3);
}

#[test]
fn a_full_transport_for_every_inline_write() {
    shuttle::check_random(|| run([0, 0], 3), ITERATIONS);
    shuttle::check_pct(|| run([0, 0], 3), ITERATIONS, 3);
}

#[test]
#[should_panic(expected = "lost wake-up")]
fn the_check_finds_a_lost_wake_up() {
    // The same protocol with one bug: an inline write that finds the transport full does not
    // wake the writer task.
    shuttle::check_random(|| run_buggy([0, 0], 3), ITERATIONS);
}
