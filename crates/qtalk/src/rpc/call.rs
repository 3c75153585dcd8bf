//! An incoming call as its handler sees it: [`Call`], and [`Cancelled`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::codec;
use crate::rpc::args::{decode_params, Params};
use crate::rpc::frame::FrameReader;
use crate::rpc::io::{CallReader, PeerGone};
use crate::rpc::responder::Slot;
use crate::rpc::{CallContext, Caller, Error, Metadata};

/// An incoming call: its selector, metadata and deadline ([`Call::context`]), the connection
/// it came over ([`Call::connection`]), a [`Caller`] back to the calling peer, and the values
/// (or, after continuing, raw bytes) the caller sends.
pub struct Call {
    selector: String,
    caller: Caller,
    context: CallContext,
    extensions: qtalk_mux::Extensions,
    reader: FrameReader,
    /// `None` only while dropping.
    r: Option<CallReader>,
    /// The arguments (or the end of the caller's stream) have been read.
    args_read: bool,
    /// The responder's side of the channel, watched by [`Call::cancelled`], and whether the
    /// arguments arrived whole (shared with the [`Responder`](crate::rpc::Responder)).
    slot: Slot,
    /// See [`Options::args_grace`](crate::rpc::Options::args_grace).
    args_grace: Duration,
}

impl Drop for Call {
    /// A caller writes the header and the arguments separately (the reference does), so a
    /// responder that answers without reading the arguments (e.g. `not found`) must not close
    /// the channel before they arrive, or the caller's second write fails and it never sees
    /// the answer. The channel stays open until they came (or a short grace period passed).
    fn drop(&mut self) {
        if self.args_read {
            return;
        }
        let (Some(CallReader::Channel(mut r)), Ok(rt)) =
            (self.r.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let grace = self.args_grace;
        let mut reader = std::mem::replace(&mut self.reader, FrameReader::new(0));
        rt.spawn(async move {
            let _ = tokio::time::timeout(grace, reader.next(&mut r)).await;
        });
    }
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("selector", &self.selector)
            .field("channel", &self.channel_id())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Completes when the caller gave up on a call, or its deadline passed (see
/// [`Call::cancelled`]).
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled {
    peer: PeerGone,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled")
            .field("deadline", &self.deadline.as_ref().map(|s| s.deadline()))
            .finish_non_exhaustive()
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(d) = &mut this.deadline {
            if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Pin::new(&mut this.peer).poll(cx)
    }
}

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        selector: String,
        caller: Caller,
        context: CallContext,
        reader: FrameReader,
        r: CallReader,
        slot: Slot,
        args_grace: Duration,
    ) -> Self {
        Call {
            selector,
            caller,
            context,
            extensions: qtalk_mux::Extensions::new(),
            reader,
            r: Some(r),
            args_read: false,
            slot,
            args_grace,
        }
    }

    /// The normalized selector (`/`-separated, with a leading `/`).
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// A caller on the session this call arrived on: call back whoever called.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// What is known of the connection the call came over: addresses, TLS peer
    /// certificates, the WebSocket request, a Unix peer's credentials, and what layers below
    /// vouched for (the P2P fingerprint).
    pub fn connection(&self) -> &qtalk_mux::ConnectionInfo {
        self.caller.session().connection_info()
    }

    /// The call's metadata and deadline, as the caller sent them. Forward them to the calls
    /// made on its behalf with [`CallContext::forward`].
    pub fn context(&self) -> &CallContext {
        &self.context
    }

    /// The call's metadata (see [`Call::context`]).
    pub fn metadata(&self) -> &Metadata {
        self.context.metadata()
    }

    /// When the caller stops waiting for the answer, if it said (see [`Call::cancelled`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.context.deadline()
    }

    /// The time left until the deadline, if there is one.
    pub fn remaining(&self) -> Option<Duration> {
        self.context.remaining()
    }

    /// Values that middleware attached to this call (e.g. the identity an authentication
    /// layer accepted), one per type.
    pub fn extensions(&self) -> &qtalk_mux::Extensions {
        &self.extensions
    }

    /// The call's extensions, to attach values.
    pub fn extensions_mut(&mut self) -> &mut qtalk_mux::Extensions {
        &mut self.extensions
    }

    /// Completes when the caller gives up on the call: it closed the call's channel (a
    /// deadline on its side, a dropped call future, the reference's cancelled context), the
    /// session ended, or the call's deadline ([`Call::deadline`]) passed. The handler is not
    /// stopped by it; race its work against this future to stop early:
    ///
    /// ```
    /// use qtalk::rpc::{handler_fn, Call, Responder};
    /// let slow = handler_fn(|r: Responder, call: Call| async move {
    ///     tokio::select! {
    ///         _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
    ///             let _ = r.ret(&"done").await;
    ///         }
    ///         _ = call.cancelled() => {} // nobody waits for the answer any more
    ///     }
    /// });
    /// # let _ = slow;
    /// ```
    ///
    /// Once the response was sent, it is complete at once.
    pub fn cancelled(&self) -> Cancelled {
        let peer = match &*self.slot.lock() {
            Some(w) => w.peer_closed(),
            None => PeerGone::Done,
        };
        Cancelled {
            deadline: self
                .context
                .deadline()
                .map(|d| Box::pin(tokio::time::sleep_until(d))),
            peer,
        }
    }

    /// The channel id of this call (0 for a call made in memory, see
    /// [`testing`](crate::rpc::testing)).
    pub fn channel_id(&self) -> qtalk_mux::ChannelId {
        self.r
            .as_ref()
            .map_or(qtalk_mux::ChannelId::new(0), |r| r.id())
    }

    /// Receives the next value: first the arguments, then any streamed values.
    pub async fn receive<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        self.args_read = true;
        let r = self.r.as_mut().expect("present until drop");
        let v = self.reader.receive(&*self.slot.codec, r).await?;
        self.slot.mark_args_done();
        Ok(v)
    }

    /// Receives the next value, or `None` once the caller ended its stream.
    pub async fn receive_next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        self.args_read = true;
        let r = self.r.as_mut().expect("present until drop");
        let next = self.reader.next(r).await?;
        self.slot.mark_args_done();
        match next {
            Some(body) => Ok(Some(codec::decode(&*self.slot.codec, &body)?)),
            None => Ok(None),
        }
    }

    /// Receives the arguments as positional parameters (an array), checking the count like
    /// the reference: `fn: expected N params, got M`.
    pub async fn params<P: Params>(&mut self) -> Result<P, Error> {
        self.args_read = true;
        let r = self.r.as_mut().expect("present until drop");
        match self.reader.next(r).await? {
            Some(body) => {
                self.slot.mark_args_done();
                decode_params(&*self.slot.codec, &body)
            }
            None => Err(Error::Truncated),
        }
    }

    /// Receives up to `max` raw bytes (after the arguments, once continued) without copying
    /// them; `None` at end-of-stream. The zero-copy counterpart of `AsyncRead`.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Option<bytes::Bytes>> {
        self.args_read = true;
        match self.r.as_mut() {
            Some(r) => self.reader.read_chunk(r, max).await,
            None => Ok(None),
        }
    }
}

impl AsyncRead for Call {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.args_read = true;
        if this.reader.has_buffered() {
            this.reader.drain_into(buf);
            return Poll::Ready(Ok(()));
        }
        match this.r.as_mut() {
            Some(r) => Pin::new(r).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}
