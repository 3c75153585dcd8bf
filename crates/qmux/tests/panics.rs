//! Panics end the session, never hang it: a transport that panics in a read or a write, a
//! waker that panics in the session's reader task, and a waker that panics while the
//! session's state is locked (poisoning it). Each time `wait()` and every pending operation
//! report the error, and no task of the session is left.

mod common;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};

use common::within;
use qtalk_mux::{Config, Error, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream that panics in its next read or write once told to.
struct Panicky {
    io: TcpStream,
    on_read: Arc<AtomicBool>,
    on_write: Arc<AtomicBool>,
}

impl AsyncRead for Panicky {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let res = Pin::new(&mut self.io).poll_read(cx, buf);
        if res.is_ready() && self.on_read.load(Ordering::SeqCst) {
            panic!("read boom");
        }
        res
    }
}

impl AsyncWrite for Panicky {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.on_write.load(Ordering::SeqCst) {
            panic!("write boom");
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

struct Pair {
    /// Over the panicky transport.
    a: Session,
    /// A plain session at the other end.
    b: Session,
    on_read: Arc<AtomicBool>,
    on_write: Arc<AtomicBool>,
}

async fn pair() -> Pair {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (on_read, on_write) = (Arc::default(), Arc::default());
    let io = Panicky {
        io: client.unwrap(),
        on_read: Arc::clone(&on_read),
        on_write: Arc::clone(&on_write),
    };
    Pair {
        a: Session::new(io, Config::default()),
        b: qtalk_mux::transport::over_tcp(server.unwrap().0, Config::default()),
        on_read,
        on_write,
    }
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until the runtime runs no more than `n` tasks (those of the sessions have ended).
async fn tasks_back_to(n: usize) {
    within(10, "the session's tasks end", async {
        while alive_tasks() > n {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Holds what the application is waiting for on `a`: a read on a channel opened by `b`
/// (whose `b` side is returned) and an accept.
async fn pending_operations(
    p: &Pair,
) -> (
    qtalk_mux::Channel,
    tokio::task::JoinHandle<io::Result<usize>>,
    tokio::task::JoinHandle<Option<qtalk_mux::Channel>>,
) {
    let (theirs, ours) = tokio::join!(p.b.open(), p.a.accept());
    let mut ours = ours.unwrap();
    let read = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        ours.read(&mut buf).await
    });
    let a = p.a.clone();
    let accept = tokio::spawn(async move { a.accept().await });
    tokio::task::yield_now().await;
    (theirs.unwrap(), read, accept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_panics_in_a_read_ends_the_session() {
    let before = alive_tasks();
    let p = pair().await;
    let (mut theirs, read, accept) = pending_operations(&p).await;
    p.on_read.store(true, Ordering::SeqCst);
    theirs.write_all(b"hello").await.unwrap();

    let err = within(10, "wait", p.a.wait()).await;
    assert!(
        matches!(&err, Error::TransportPanicked(m) if &**m == "read boom"),
        "{err:?}"
    );
    let read_err = within(10, "pending read", read).await.unwrap().unwrap_err();
    assert!(read_err.to_string().contains("read boom"), "{read_err}");
    assert!(within(10, "pending accept", accept)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(p.a.open().await, Err(Error::TransportPanicked(_))));
    // The peer sees the connection go.
    assert!(matches!(
        within(10, "peer", p.b.wait()).await,
        Error::PeerClosed
    ));
    drop((p, theirs));
    tasks_back_to(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_that_panics_in_a_write_ends_the_session() {
    let before = alive_tasks();
    let p = pair().await;
    let (theirs, read, accept) = pending_operations(&p).await;
    p.on_write.store(true, Ordering::SeqCst);
    // The write is taken (queued), and whoever writes it to the transport meets the panic.
    let a = p.a.clone();
    let open = tokio::spawn(async move { a.open().await });

    let err = within(10, "wait", p.a.wait()).await;
    assert!(
        matches!(&err, Error::TransportPanicked(m) if &**m == "write boom"),
        "{err:?}"
    );
    assert!(matches!(
        within(10, "pending open", open).await.unwrap(),
        Err(Error::TransportPanicked(_))
    ));
    let read_err = within(10, "pending read", read).await.unwrap().unwrap_err();
    assert!(read_err.to_string().contains("write boom"), "{read_err}");
    assert!(within(10, "pending accept", accept)
        .await
        .unwrap()
        .is_none());
    drop((p, theirs));
    tasks_back_to(before).await;
}

/// A waker that panics when woken.
struct PanicOnWake;

impl Wake for PanicOnWake {
    fn wake(self: Arc<Self>) {
        panic!("wake boom");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_reader_task_ends_the_session() {
    let before = alive_tasks();
    let p = pair().await;
    let (theirs, ours) = tokio::join!(p.b.open(), p.a.accept());
    let (mut theirs, mut ours) = (theirs.unwrap(), ours.unwrap());
    let (_held, read, accept) = pending_operations(&p).await;
    // A read registered with a waker that panics: the reader task wakes it when data comes.
    let waker = Waker::from(Arc::new(PanicOnWake));
    let mut buf = [0u8; 4];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(Pin::new(&mut ours)
        .poll_read(&mut Context::from_waker(&waker), &mut rb)
        .is_pending());
    theirs.write_all(b"data").await.unwrap();

    let err = within(10, "wait", p.a.wait()).await;
    assert!(
        matches!(&err, Error::Panicked(m) if &**m == "wake boom"),
        "{err:?}"
    );
    let read_err = within(10, "pending read", read).await.unwrap().unwrap_err();
    assert!(read_err.to_string().contains("wake boom"), "{read_err}");
    assert!(within(10, "pending accept", accept)
        .await
        .unwrap()
        .is_none());
    drop((p, theirs, ours));
    tasks_back_to(before).await;
}

/// A waker whose `clone` panics: the session registers it while holding its state's lock.
fn waker_panicking_on_clone() -> Waker {
    fn clone(_: *const ()) -> RawWaker {
        panic!("clone boom");
    }
    fn noop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    // SAFETY: the vtable's functions ignore the data pointer, which is never dereferenced.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_the_state_is_locked_ends_the_session() {
    let before = alive_tasks();
    let p = pair().await;
    let (theirs, ours) = tokio::join!(p.b.open(), p.a.accept());
    let (theirs, mut ours) = (theirs.unwrap(), ours.unwrap());
    let (_held, read, accept) = pending_operations(&p).await;
    let waker = waker_panicking_on_clone();
    let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut buf = [0u8; 4];
        let mut rb = ReadBuf::new(&mut buf);
        let _ = Pin::new(&mut ours).poll_read(&mut Context::from_waker(&waker), &mut rb);
    }));
    assert!(
        poll.is_err(),
        "the poll panicked, in the application's task"
    );
    // The next use of the session finds the lock poisoned and ends the session.
    let open = p.a.open();
    assert!(matches!(
        within(10, "open", open).await,
        Err(Error::Panicked(_))
    ));
    let err = within(10, "wait", p.a.wait()).await;
    assert!(matches!(err, Error::Panicked(_)), "{err:?}");
    assert!(within(10, "pending read", read).await.unwrap().is_err());
    assert!(within(10, "pending accept", accept)
        .await
        .unwrap()
        .is_none());
    drop((p, theirs, ours));
    tasks_back_to(before).await;
}
