//! The reader task: reads the transport, feeds the protocol state, enforces accept deadlines
//! and flushes the replies the input called for.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::guard;
use super::recycle::Recycler;
use super::{Inner, Shared};
use crate::error::Error;

/// Read buffer size between frames.
const READ_CHUNK: usize = 64 * 1024;
/// Largest single read while inside a big DATA payload.
const READ_MAX: usize = 1024 * 1024;
/// The rest of a DATA payload at least this long is read into a buffer of its own.
const PAYLOAD_OWN_MIN: usize = 16 * 1024;

pub(super) async fn read_loop<R>(shared: Arc<Shared>, mut reader: R, done: CancellationToken)
where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::new();
    let linger = shared.config.read_buffer_idle;
    // Kept buffers hold at most two windows' worth: what one channel may have in flight.
    let keep = if linger.is_zero() {
        0
    } else {
        2 * shared.config.proto.window() as usize
    };
    let mut recycler = Recycler::new(keep);
    let mut want = READ_CHUNK;
    // The earliest accept deadline. Incoming channels appear only while this task handles
    // input, so it enforces their deadlines itself, with no wake-up of another task per open.
    // One timer, re-armed only when it fires (queued deadlines only grow), so busy sessions do
    // not touch the timer wheel per read.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed = false;
    // Frees the kept receive buffers once bulk data stopped for `linger`; made only while
    // some are kept (an idle session holds none), and re-armed once per `linger` while they
    // are in use.
    let mut idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    // Bytes still to come of the DATA payload being received (as of the last input).
    let mut payload = 0;
    // Between the frames of bulk data, a read takes a whole frame at once: header and
    // payload in one buffer, one system call.
    let bulk_want = (shared.config.proto.max_packet() as usize).clamp(READ_CHUNK, READ_MAX);
    loop {
        let own = buf.is_empty() && payload >= PAYLOAD_OWN_MIN;
        prepare(&mut buf, &mut recycler, own, payload, want);
        if recycler.holds() && idle.is_none() {
            idle = Some(Box::pin(tokio::time::sleep(linger)));
        }
        let read = tokio::select! {
            biased;
            _ = shared.ended.cancelled() => break,
            r = poll_fn(|cx| read_some(&mut reader, &mut buf, &mut recycler, cx, (own, payload, want))) => Some(r),
            _ = &mut timer, if armed => None,
            _ = async {
                match idle.as_mut() {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            }, if idle.is_some() => {
                recycler.idle();
                idle = None;
                continue;
            }
        };
        let mut inner = shared.lock();
        let Some(read) = read else {
            expire_accepts(&mut inner);
            armed = false;
            if let Some(d) = next_deadline(&inner) {
                timer.as_mut().reset(d);
                armed = true;
            }
            continue;
        };
        match read {
            Ok(0) => {
                let cause = match inner.proto.handle_eof(&buf) {
                    Ok(()) => Error::PeerClosed,
                    Err(e) => e.into(),
                };
                inner.end(cause);
                drop(inner);
                shared.ended.cancel();
                break;
            }
            Ok(n) => {
                if let Err(e) = inner.proto.handle_input(&mut buf) {
                    tracing::debug!(error = %e, "qmux protocol error");
                    inner.end(e.into());
                    drop(inner);
                    shared.ended.cancel();
                    break;
                }
                payload = inner.proto.payload_remaining();
                want = if payload == 0 && (own || n >= READ_CHUNK) {
                    bulk_want
                } else {
                    payload.clamp(READ_CHUNK, READ_MAX)
                };
                // Queue what arrived now, to see its deadlines (dropping the lock would too).
                inner.dispatch(shared.config.accept_timeout);
                note_waiting_opens(&mut inner, shared.config.accept_timeout);
                if !armed {
                    if let Some(d) = next_deadline(&inner) {
                        timer.as_mut().reset(d);
                        armed = true;
                    }
                }
                // The replies the input called for (confirmations, CLOSE answers) leave now.
                inner.flush();
            }
            Err(e) => {
                inner.end(guard::transport_error(e));
                drop(inner);
                shared.ended.cancel();
                break;
            }
        }
    }
    drop(reader);
    done.cancel();
}

/// Makes room in the read buffer for the next read: inside a large DATA payload (`own`), a
/// buffer of its own for the rest of it, so that the slices handed to the channel pin nothing
/// of other frames (what a peer makes a session hold stays close to what it sent); else at
/// least half of `want`.
fn prepare(buf: &mut BytesMut, recycler: &mut Recycler, own: bool, payload: usize, want: usize) {
    if own {
        let exact = payload.min(READ_MAX);
        if buf.capacity() != exact {
            recycler.replace(buf, exact);
        }
    } else if buf.capacity() - buf.len() < want / 2 {
        if buf.is_empty() {
            recycler.replace(buf, want);
        } else {
            buf.reserve(want);
            recycler.forget();
        }
    }
}

/// Reads what the transport has into `buf`, made ready by [`prepare`] with `next` (own,
/// payload, want) if it has no room. While nothing comes, an empty buffer is not held: an idle
/// session keeps no read buffer (a large one goes back to the recycler).
fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    recycler: &mut Recycler,
    cx: &mut Context<'_>,
    (own, payload, want): (bool, usize, usize),
) -> Poll<io::Result<usize>> {
    if buf.capacity() == buf.len() {
        prepare(buf, recycler, own, payload, want);
    }
    let res = tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf);
    if res.is_pending() && buf.is_empty() {
        recycler.release(buf, READ_CHUNK);
    }
    res
}

/// Notes a deadline for the peer's OPENs that arrived waiting in the last input.
fn note_waiting_opens(inner: &mut Inner, timeout: Duration) {
    if inner.proto.opens_waiting() == 0 {
        inner.waiting_deadlines.clear();
        return;
    }
    let received = inner.proto.opens_received();
    if inner
        .waiting_deadlines
        .back()
        .is_none_or(|&(n, _)| n < received)
    {
        inner
            .waiting_deadlines
            .push_back((received, Instant::now() + timeout));
    }
}

/// The earliest accept deadline, of a channel waiting for accept or an OPEN waiting unconfirmed.
fn next_deadline(inner: &Inner) -> Option<Instant> {
    let a = inner.accept_queue.front().map(|&(_, d, _)| d);
    let w = inner.waiting_deadlines.front().map(|&(_, d)| d);
    match (a, w) {
        (Some(a), Some(w)) => Some(a.min(w)),
        (a, w) => a.or(w),
    }
}

/// Refuses incoming channels that waited too long for accept (closes those confirmed early
/// whose acceptor went away), and the peer's OPENs that waited too long unconfirmed.
fn expire_accepts(inner: &mut Inner) {
    let now = Instant::now();
    while let Some(&(received, deadline)) = inner.waiting_deadlines.front() {
        if deadline > now {
            break;
        }
        inner.waiting_deadlines.pop_front();
        if inner.proto.opens_waiting() > 0 {
            tracing::debug!("qmux: incoming OPENs waited too long unconfirmed");
        }
        inner.proto.refuse_waiting(received);
    }
    while let Some(&(id, deadline, confirmed)) = inner.accept_queue.front() {
        if deadline > now {
            break;
        }
        inner.accept_queue.pop_front();
        tracing::debug!(
            channel = id.get(),
            "qmux: incoming channel not accepted in time"
        );
        if confirmed {
            inner.proto.release(id);
        } else {
            let _ = inner.proto.reject(id);
        }
    }
}
