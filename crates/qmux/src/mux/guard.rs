//! Panics: in the transport's code (caught at every poll and turned into an error that ends
//! the session), and in the session's tasks (caught around each task, which then ends the
//! session and finishes as it would have). Nothing is left waiting after either.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::error::Error;

/// The text of a panic's payload.
pub(super) fn panic_message(payload: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("(not a string)")
    }
}

/// The error a transport call returns once the transport panicked.
#[derive(Debug)]
struct TransportPanic(Arc<str>);

impl std::fmt::Display for TransportPanic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the transport panicked: {}", self.0)
    }
}

impl std::error::Error for TransportPanic {}

/// Runs one call into the transport; a panic becomes an error, now and for every later call
/// (`panicked` keeps its message: the transport may be half updated).
pub(super) fn guard<T>(
    panicked: &mut Option<Arc<str>>,
    call: impl FnOnce() -> Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    if let Some(m) = panicked {
        return Poll::Ready(Err(io::Error::other(TransportPanic(m.clone()))));
    }
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(res) => res,
        Err(payload) => {
            let m = panic_message(&*payload);
            *panicked = Some(m.clone());
            Poll::Ready(Err(io::Error::other(TransportPanic(m))))
        }
    }
}

/// Why a transport error ended the session.
pub(super) fn transport_error(e: io::Error) -> Error {
    if let Some(TransportPanic(m)) = e.get_ref().and_then(|e| e.downcast_ref()) {
        return Error::TransportPanicked(m.clone());
    }
    // A peer that closed the connection breaks our reads and writes: that is its going away.
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::PeerClosed,
        _ => e.into(),
    }
}

/// The transport's reading side, its panics caught.
pub(super) struct GuardedRead<R> {
    io: R,
    panicked: Option<Arc<str>>,
}

impl<R> GuardedRead<R> {
    pub(super) fn new(io: R) -> Self {
        GuardedRead { io, panicked: None }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for GuardedRead<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let io = &mut this.io;
        guard(&mut this.panicked, || Pin::new(io).poll_read(cx, buf))
    }
}

/// Runs the task in `slot` to its end; `Err` with the message when one of its polls (or
/// dropping it after that) panicked. The task is dropped at once after a panic, so that what
/// it owned (the transport's reading side, say) goes at once. The caller pins the task in
/// place (`std::pin::pin!(Some(task))`), so that it is not stored twice.
pub(super) async fn catch_panic<F: Future<Output = ()>>(
    mut slot: Pin<&mut Option<F>>,
) -> Result<(), Arc<str>> {
    poll_fn(|cx| {
        let polled = catch_unwind(AssertUnwindSafe(|| match slot.as_mut().as_pin_mut() {
            Some(task) => task.poll(cx),
            None => Poll::Ready(()),
        }));
        match polled {
            Ok(done) => done.map(Ok),
            Err(payload) => {
                let m = panic_message(&*payload);
                let _ = catch_unwind(AssertUnwindSafe(|| slot.set(None)));
                Poll::Ready(Err(m))
            }
        }
    })
    .await
}
