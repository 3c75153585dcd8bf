//! The public [`Session`] handle; it delegates to its base layer (`backend.rs`): qmux framing
//! driven by `mux/`, or QUIC.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::backend::SessionBackend;
use crate::channel::Channel;
use crate::config::Config;
use crate::error::Error;
use crate::mux;

/// A qmux session: many flow-controlled [`Channel`]s over one byte stream.
///
/// Either side may [`open`](Session::open) channels and [`accept`](Session::accept) the
/// peer's. The handle is cheap to clone; the session runs until [`close`](Session::close) is
/// called, the transport ends, the peer breaks the protocol, or the last handle (every clone
/// of the `Session` and every [`Channel`]) is dropped, which closes it as `close` does.
/// [`wait`](Session::wait) reports why it ended.
///
/// Over qmux a session runs two tasks, spawned by [`Session::new`]: a reader (it reads the
/// transport and refuses channels not accepted in time) and a writer (it writes what the
/// handles queue, unless a write path wrote it inline, and shuts the transport down at the
/// end). Both end when the session ends. Over QUIC, quinn runs the connection.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), qtalk_mux::Error> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let (a, b) = tokio::io::duplex(64 * 1024);
/// let client = qtalk_mux::Session::new(a, qtalk_mux::Config::default());
/// let server = qtalk_mux::Session::new(b, qtalk_mux::Config::default());
///
/// tokio::spawn(async move {
///     let mut ch = server.accept().await.unwrap();
///     let mut msg = String::new();
///     ch.read_to_string(&mut msg).await.unwrap();
///     ch.write_all(msg.to_uppercase().as_bytes()).await.unwrap();
/// });
///
/// let mut ch = client.open().await?;
/// ch.write_all(b"hello").await?;
/// ch.close_write()?;
/// let mut reply = String::new();
/// ch.read_to_string(&mut reply).await?;
/// assert_eq!(reply, "HELLO");
/// client.close();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Session {
    backend: SessionBackend,
    /// See [`Session::connection_info`] (`conn_info.rs`).
    pub(crate) info: Arc<crate::ConnectionInfo>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = self.backend.name();
        f.debug_struct("Session")
            .field("base", &base)
            .field("transport", &self.info.transport())
            .field("ended", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Runs a session over a duplex byte stream (split internally).
    ///
    /// Must be called within a tokio runtime: it spawns the session's reader and writer tasks.
    pub fn new<T>(io: T, config: Config) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        Session::from_split(r, w, config)
    }

    /// Runs a session over a separate reader and writer (pipes, stdio, split sockets).
    ///
    /// Must be called within a tokio runtime: it spawns the session's reader and writer tasks.
    pub fn from_split<R, W>(reader: R, writer: W, config: Config) -> Session
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + 'static,
    {
        Session {
            backend: SessionBackend::Mux(mux::spawn(reader, writer, config)),
            info: Arc::default(),
        }
    }

    /// A session over another base layer (see `backend.rs`).
    #[cfg(feature = "quic")]
    pub(crate) fn from_backend(backend: SessionBackend) -> Session {
        Session {
            backend,
            info: Arc::default(),
        }
    }

    /// The configuration this session runs with.
    pub fn config(&self) -> &Config {
        self.backend.config()
    }

    /// Opens a channel and waits for the peer to confirm it.
    ///
    /// Fails with [`Error::OpenRefused`] when the peer refuses, or with the session's error when
    /// it ends first. Cancel-safe: dropping the future abandons the open, and a late
    /// confirmation is answered with CLOSE. See [`Session::open_timeout`] for a deadline.
    ///
    /// Over QUIC there is no confirmation: the stream is opened (waiting while the peer's
    /// stream limit is reached) and announced to the peer at once.
    pub async fn open(&self) -> Result<Channel, Error> {
        tokio::time::timeout(self.config().open_timeout, self.backend.open())
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// [`Session::open`] with a deadline: [`Error::Timeout`] when the peer has not answered in
    /// time.
    pub async fn open_timeout(&self, timeout: Duration) -> Result<Channel, Error> {
        tokio::time::timeout(timeout, self.open())
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    /// Waits for the next channel opened by the peer; `None` once the session has ended (after
    /// handing out the channels already confirmed to the peer, whose data stays readable).
    ///
    /// Channels not accepted within the configured accept timeout are refused, without holding
    /// up other channels.
    pub async fn accept(&self) -> Option<Channel> {
        self.backend.accept().await
    }

    /// Ends the session: frames already queued are still delivered (for up to the configured
    /// close timeout), then the transport is closed. Pending operations fail with
    /// [`Error::Closed`]. No frame announces the end, as in the reference.
    ///
    /// Over QUIC the connection is closed with application error code 42 and reason
    /// `close connection`, as the reference does, once the peer has acknowledged the data of
    /// the channels already finished or dropped (for up to the close timeout).
    pub fn close(&self) {
        self.backend.close()
    }

    /// Waits until the session has ended and its transport is closed, and returns why it
    /// ended: [`Error::PeerClosed`] when the peer went away cleanly, [`Error::Closed`] after
    /// [`Session::close`]. Never returns success.
    pub async fn wait(&self) -> Error {
        self.backend.wait().await
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        self.backend.is_closed()
    }

    /// True when [`Session::open`] waits a round trip for the peer's confirmation (qmux);
    /// false when a channel opens at once (QUIC). Callers that open channels ahead of need
    /// (see qtalk's spare channels) only gain where it waits.
    pub fn open_needs_round_trip(&self) -> bool {
        self.backend.open_needs_round_trip()
    }

    /// Number of channels holding an id (opening, open, or closing); over QUIC, the channels
    /// this side holds.
    pub fn channel_count(&self) -> usize {
        self.backend.channel_count()
    }
}
