//! Open, accept, close and wait on a qmux session.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

use qtalk_mux_proto::{ChannelId, OpenStart, OpenStatus, OpenTicket};

use super::{push_waker, push_waker_list, Owner, Shared};
use crate::backend::ChannelBackend;
use crate::channel::{Channel, Handle};
use crate::error::Error;

/// [`Session::wait`](crate::Session::wait) of a qmux session.
pub(crate) async fn wait_mux(owner: &Owner) -> Error {
    owner.finished.cancelled().await;
    owner.lock().session_error()
}

pub(crate) async fn open_mux(shared: &Arc<Owner>) -> Result<Channel, Error> {
    let start = {
        let mut inner = shared.lock();
        match inner.proto.open() {
            Ok(start) => {
                if let OpenStart::Queued(ticket) = start {
                    // Noted under the same lock, so that the open starting before this task
                    // polls again finds its entry (and is not taken as abandoned).
                    inner.queued_opens.insert(ticket, (None, None));
                }
                inner.flush();
                start
            }
            Err(_) => return Err(inner.session_error()),
        }
    };
    let id = match start {
        OpenStart::Started(id) => id,
        OpenStart::Queued(ticket) => {
            // At the channel limit or out of budget: wait for a slot, in order.
            let mut queued = QueuedOpen {
                shared,
                ticket: Some(ticket),
            };
            poll_fn(|cx| {
                let mut inner = shared.lock();
                if inner.error.is_some() {
                    return Poll::Ready(Err(inner.session_error()));
                }
                let Some(entry) = inner.queued_opens.get_mut(&ticket) else {
                    // Gone only when the session ended (see `end`).
                    return Poll::Ready(Err(inner.session_error()));
                };
                if let Some(id) = entry.1 {
                    inner.queued_opens.remove(&ticket);
                    queued.ticket = None;
                    return Poll::Ready(Ok(id));
                }
                push_waker(&mut entry.0, cx);
                Poll::Pending
            })
            .await?
        }
    };
    let mut pending = PendingOpen {
        shared,
        id: Some(id),
    };
    poll_fn(|cx| {
        let mut inner = shared.lock();
        match inner.proto.open_status(id) {
            Ok(OpenStatus::Pending) => {
                push_waker(&mut inner.wakers(id).open, cx);
                Poll::Pending
            }
            Ok(OpenStatus::Confirmed) => {
                pending.id = None;
                Poll::Ready(Ok(Channel::from_backend(ChannelBackend::Mux(Handle {
                    shared: shared.clone(),
                    id,
                }))))
            }
            Ok(OpenStatus::Refused) => Poll::Ready(Err(Error::OpenRefused)),
            Err(_) => Poll::Ready(Err(inner.session_error())),
        }
    })
    .await
}

pub(crate) async fn accept_mux(shared: &Arc<Owner>) -> Option<Channel> {
    poll_fn(|cx| {
        let mut inner = shared.lock();
        let ended = inner.error.is_some();
        while let Some((id, _, confirmed)) = inner.accept_queue.pop_front() {
            // A channel already confirmed is the application's even when the session ended
            // before it was taken: the peer may have sent data (and EOF) on it, all readable.
            if confirmed {
                return Poll::Ready(Some(Channel::from_backend(ChannelBackend::Mux(Handle {
                    shared: shared.clone(),
                    id,
                }))));
            }
            if !ended && inner.proto.accept(id).is_ok() {
                inner.flush();
                return Poll::Ready(Some(Channel::from_backend(ChannelBackend::Mux(Handle {
                    shared: shared.clone(),
                    id,
                }))));
            }
        }
        if ended {
            return Poll::Ready(None);
        }
        push_waker_list(&mut inner.accept_wakers, cx);
        Poll::Pending
    })
    .await
}

pub(crate) fn close_mux(shared: &Shared) {
    let mut inner = shared.lock();
    if inner.error.is_some() {
        return;
    }
    let mut frames = Vec::new();
    inner.proto.poll_transmit(&mut frames);
    inner.final_frames = frames;
    inner.end(Error::Closed);
    drop(inner);
    shared.ended.cancel();
}

/// Gives up a queued open when the future is dropped.
struct QueuedOpen<'a> {
    shared: &'a Shared,
    ticket: Option<OpenTicket>,
}

impl Drop for QueuedOpen<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            let mut inner = self.shared.lock();
            let started = inner.queued_opens.remove(&t).and_then(|(_, id)| id);
            if !inner.proto.cancel_open(t) {
                if let Some(id) = started {
                    inner.proto.release(id);
                }
            }
        }
    }
}

/// Abandons an unfinished open when the future is dropped.
struct PendingOpen<'a> {
    shared: &'a Shared,
    id: Option<ChannelId>,
}

impl Drop for PendingOpen<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shared.lock().proto.release(id);
        }
    }
}
