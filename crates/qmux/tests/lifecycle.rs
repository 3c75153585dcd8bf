//! Session end: every pending operation wakes promptly with an error, and no task is left.

mod common;

use std::time::{Duration, Instant};

use common::{within, RawPeer};
use qtalk_mux::qtalk_mux_proto::Frame;
use qtalk_mux::{Config, Error};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Sets up a session with one pending open, one pending accept, one pending read and one
/// pending write (window used up), then runs `end` and checks they all fail quickly.
async fn pending_operations_wake(end: impl std::future::Future<Output = ()>, peer_side: bool) {
    let baseline = alive_tasks();
    let (mut peer, session) = RawPeer::connect(Config::default()).await;

    // A channel the peer opened: used for the pending read and the pending write.
    peer.send(Frame::Open {
        sender_id: 1,
        window: 5,
        max_packet: 1024,
    })
    .await;
    let ch = within(5, "accept", session.accept()).await.unwrap();
    let _ = peer.recv().await; // OPEN_CONFIRM
    let (mut r, mut w) = ch.into_split();
    let read = tokio::spawn(async move {
        let mut buf = [0u8; 16];
        r.read(&mut buf).await
    });
    let write = tokio::spawn(async move { w.write_all(b"more than five bytes").await });
    let s = session.clone();
    let accept = tokio::spawn(async move { s.accept().await });
    let s = session.clone();
    let open = tokio::spawn(async move { s.open().await });
    // Let them all block.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (name, done) in [
        ("read", read.is_finished()),
        ("write", write.is_finished()),
        ("accept", accept.is_finished()),
        ("open", open.is_finished()),
    ] {
        assert!(!done, "{name} finished before the session ended");
    }

    let t0 = Instant::now();
    if peer_side {
        drop(peer);
        end.await;
    } else {
        end.await;
        drop(peer);
    }
    let read = within(1, "read wakes", read).await.unwrap();
    let write = within(1, "write wakes", write).await.unwrap();
    let accept = within(1, "accept wakes", accept).await.unwrap();
    let open = within(1, "open wakes", open).await.unwrap();
    let elapsed = t0.elapsed();
    assert!(read.is_err(), "read: {read:?}");
    assert!(write.is_err(), "write: {write:?}");
    assert!(accept.is_none());
    assert!(open.is_err());
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
    within(2, "wait", session.wait()).await;
    drop(session);

    // Both session tasks are gone.
    within(2, "tasks exit", async {
        while alive_tasks() > baseline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_closed_by_peer_wakes_everything() {
    pending_operations_wake(async {}, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_close_wakes_everything() {
    // `end` runs before the peer is dropped: close the session from our side.
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    let s = session.clone();
    let accept = tokio::spawn(async move { s.accept().await });
    let s = session.clone();
    let open = tokio::spawn(async move { s.open().await });
    let _ = within(5, "open frame", peer.recv()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t0 = Instant::now();
    session.close();
    assert!(within(1, "accept", accept).await.unwrap().is_none());
    let err = within(1, "open", open).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert!(matches!(
        within(2, "wait", session.wait()).await,
        Error::Closed
    ));
    // The transport was closed: the peer sees end-of-stream.
    assert!(within(2, "peer eof", peer.recv()).await.is_none());
    // Operations after the end fail at once.
    assert!(session.open().await.is_err());
    assert!(session.accept().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_gone_mid_transfer() {
    let baseline = alive_tasks();
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send(Frame::Open {
        sender_id: 1,
        window: 1 << 20,
        max_packet: 1 << 16,
    })
    .await;
    let mut ch = within(5, "accept", session.accept()).await.unwrap();
    let _ = peer.recv().await;
    // Half of a DATA frame, then the peer vanishes.
    let mut b = bytes::BytesMut::new();
    qtalk_mux::qtalk_mux_proto::frame::encode_data_header(0, 1000, &mut b);
    b.extend_from_slice(&[1u8; 500]);
    peer.send_raw(&b).await;
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let r = ch.read_to_end(&mut buf).await;
        (r, buf.len())
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(peer);
    let (r, n) = within(1, "reader wakes", reader).await.unwrap();
    assert_eq!(n, 500);
    assert!(r.is_err());
    let cause = within(1, "wait", session.wait()).await;
    assert!(matches!(cause, Error::Protocol(_)), "{cause}");
    drop(session);
    within(2, "tasks exit", async {
        while alive_tasks() > baseline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_before_close_is_delivered() {
    let (a, b) = common::tcp_pair(Config::default()).await;
    let b2 = b.clone();
    let reader = tokio::spawn(async move {
        let mut ch = b2.accept().await.unwrap();
        let mut got = Vec::new();
        let _ = ch.read_to_end(&mut got).await;
        got.len()
    });
    let mut ch = a.open().await.unwrap();
    let data = common::pattern(900_000, 2);
    ch.write_all(&data).await.unwrap();
    ch.close().unwrap();
    drop(ch);
    a.close();
    assert_eq!(within(5, "reader", reader).await.unwrap(), data.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_open_future_abandons_the_channel() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    let err = session
        .open_timeout(Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout));
    let Some(Frame::Open { sender_id, .. }) = peer.recv().await else {
        panic!("expected OPEN");
    };
    // The late confirmation is answered with CLOSE.
    peer.send(Frame::OpenConfirm {
        recipient_id: sender_id,
        sender_id: 9,
        window: 100,
        max_packet: 100,
    })
    .await;
    assert_eq!(
        within(5, "close", peer.recv()).await,
        Some(Frame::Close { recipient_id: 9 })
    );
    peer.send(Frame::Close {
        recipient_id: sender_id,
    })
    .await;
    within(5, "id freed", async {
        while session.channel_count() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_confirmed_channel_nobody_takes_is_closed_after_the_accept_timeout() {
    let cfg = Config::builder()
        .accept_timeout(Duration::from_millis(100))
        .build()
        .expect("valid config");
    let (mut peer, session) = RawPeer::connect(cfg).await;
    // An acceptor that gives up: its waker stays registered, so the next OPEN is confirmed
    // at once, but nobody takes the channel.
    let s = session.clone();
    let gave_up = tokio::time::timeout(Duration::from_millis(20), async move { s.accept().await });
    assert!(gave_up.await.is_err());
    peer.send(Frame::Open {
        sender_id: 4,
        window: 100,
        max_packet: 100,
    })
    .await;
    let Some(Frame::OpenConfirm {
        recipient_id: 4, ..
    }) = within(5, "confirm", peer.recv()).await
    else {
        panic!("expected OPEN_CONFIRM");
    };
    let t0 = Instant::now();
    assert_eq!(
        within(5, "close", peer.recv()).await,
        Some(Frame::Close { recipient_id: 4 })
    );
    assert!(t0.elapsed() >= Duration::from_millis(50));
    assert!(!session.is_closed());
}

#[tokio::test]
async fn a_confirmed_channel_is_accepted_even_when_the_session_ended_first() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    // An acceptor is waiting (so the channel is confirmed at once) but does not run before
    // the peer has sent its data, EOF, and gone away.
    let mut accept = Box::pin(session.accept());
    assert!(futures_util::poll!(accept.as_mut()).is_pending());
    peer.send(Frame::Open {
        sender_id: 7,
        window: 1 << 20,
        max_packet: 1 << 16,
    })
    .await;
    let Some(Frame::OpenConfirm {
        sender_id: ours, ..
    }) = peer.recv_within(5000).await
    else {
        panic!("expected OPEN_CONFIRM");
    };
    peer.send(Frame::Data {
        recipient_id: ours,
        payload: bytes::Bytes::from_static(b"last words"),
    })
    .await;
    peer.send(Frame::Eof { recipient_id: ours }).await;
    drop(peer);
    let end = within(5, "session end", session.wait()).await;
    assert!(matches!(end, Error::PeerClosed), "{end}");
    // The acknowledged channel and its data still reach the application.
    let mut ch = within(5, "accept", accept)
        .await
        .expect("the confirmed channel");
    let mut got = Vec::new();
    within(5, "read", ch.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"last words");
    assert!(session.accept().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_the_session() {
    let (client, server) = common::tcp_pair(Config::default()).await;
    // A channel keeps the session open after the session handles are gone.
    let ch = client.open();
    let (ch, accepted) = tokio::join!(ch, server.accept());
    let (mut ch, accepted) = (ch.unwrap(), accepted.unwrap());
    drop(client);
    ch.write_all(b"still open").await.unwrap();
    let mut accepted = accepted;
    let mut buf = [0u8; 10];
    within(
        5,
        "data after the session handle is gone",
        accepted.read_exact(&mut buf),
    )
    .await
    .unwrap();
    assert_eq!(&buf, b"still open");
    // The last handle goes: the transport is shut down, and the peer sees the session end.
    let t0 = Instant::now();
    drop(ch);
    let why = within(1, "peer sees the end", server.wait()).await;
    assert!(matches!(why, qtalk_mux::Error::PeerClosed), "{why}");
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn no_task_outlives_its_session() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let (client, server) = common::tcp_pair(Config::default()).await;
        let (ch, accepted) = tokio::join!(client.open(), server.accept());
        let (mut ch, mut accepted) = (ch.unwrap(), accepted.unwrap());
        ch.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        accepted.read_exact(&mut b).await.unwrap();
        assert!(
            metrics.num_alive_tasks() >= before + 4,
            "two tasks per session"
        );
        drop((ch, accepted, client));
        within(5, "server side ends", server.wait()).await;
        drop(server);
        // Every session task has ended.
        within(5, "tasks end", async {
            while metrics.num_alive_tasks() > before {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    });
}
