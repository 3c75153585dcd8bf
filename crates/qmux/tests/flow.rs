//! Flow control: windows and max packet are respected, a stalled reader stalls only its own
//! channel, and buffered memory stays within the granted window.

mod common;

use std::time::Duration;

use common::{pattern, tcp_pair, within, RawPeer};
use qtalk_mux::qtalk_mux_proto::Frame;
use qtalk_mux::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn sender_respects_a_tiny_window_and_max_packet() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    let s2 = session.clone();
    let msg = pattern(100, 1);
    let m2 = msg.clone();
    let writer = tokio::spawn(async move {
        let mut ch = s2.open().await.unwrap();
        ch.write_all(&m2).await.unwrap();
        ch.close_write().unwrap();
        ch
    });
    let Some(Frame::Open { sender_id, .. }) = within(5, "open", peer.recv()).await else {
        panic!("expected OPEN");
    };
    peer.send(Frame::OpenConfirm {
        recipient_id: sender_id,
        sender_id: 42,
        window: 10,
        max_packet: 9,
    })
    .await;
    let mut received = Vec::new();
    let mut granted = 10usize;
    loop {
        match peer.recv_within(200).await {
            Some(Frame::Data {
                recipient_id,
                payload,
            }) => {
                assert_eq!(recipient_id, 42);
                assert!(
                    payload.len() <= 9,
                    "DATA of {} > max packet 9",
                    payload.len()
                );
                received.extend_from_slice(&payload);
                assert!(
                    received.len() <= granted,
                    "sent {} bytes with only {granted} granted",
                    received.len()
                );
            }
            Some(Frame::Eof { recipient_id: 42 }) => break,
            Some(other) => panic!("unexpected {other:?}"),
            None => {
                // Stalled: it must be because the window is used up.
                assert_eq!(received.len(), granted, "sender stalled with window left");
                peer.send(Frame::WindowAdjust {
                    recipient_id: sender_id,
                    bytes: 10,
                })
                .await;
                granted += 10;
            }
        }
    }
    assert_eq!(received, msg);
    let _ch = within(5, "writer", writer).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_stalls_only_its_own_channel() {
    const WINDOW: u32 = 256 * 1024;
    let cfg = Config::builder()
        .window(WINDOW)
        .max_packet(32 * 1024)
        .build()
        .expect("valid config");
    let (a, b) = tcp_pair(cfg).await;

    // Channel 1: b writes as fast as it can; nobody on a reads it.
    let b2 = b.clone();
    let stalled_writer = tokio::spawn(async move {
        let mut ch = b2.accept().await.unwrap();
        let block = vec![7u8; 64 * 1024];
        let mut written = 0usize;
        loop {
            match tokio::time::timeout(Duration::from_millis(300), ch.write_all(&block)).await {
                Ok(Ok(())) => written += block.len(),
                Ok(Err(e)) => panic!("write failed: {e}"),
                Err(_) => return (ch, written), // blocked on the window
            }
        }
    });
    let stalled = a.open().await.unwrap();

    // Channel 2: 32 MiB flow from b to a while channel 1 is stalled.
    let b3 = b.clone();
    let busy_writer = tokio::spawn(async move {
        let mut ch = b3.accept().await.unwrap();
        let block = pattern(1 << 20, 5);
        for _ in 0..32 {
            ch.write_all(&block).await.unwrap();
        }
        ch.close_write().unwrap();
        ch
    });
    let mut busy = a.open().await.unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 128 * 1024];
    within(30, "busy channel flows", async {
        loop {
            let n = busy.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
    })
    .await;
    assert_eq!(total, 32 << 20);
    let _busy_ch = busy_writer.await.unwrap();

    // The stalled channel holds at most its window; its writer is blocked.
    let (_ch, written) = within(10, "stalled writer blocks", stalled_writer)
        .await
        .unwrap();
    assert!(
        stalled.buffered() <= WINDOW as usize,
        "buffered {} > window {WINDOW}",
        stalled.buffered()
    );
    assert!(written <= WINDOW as usize + 64 * 1024, "wrote {written}");
    assert!(stalled.buffered() > 0);
}

#[tokio::test]
async fn window_adjusts_are_batched() {
    // Reading in small pieces does not send one WINDOW_ADJUST per read.
    let cfg = Config::builder()
        .window(64 * 1024)
        .build()
        .expect("valid config");
    let (mut peer, session) = RawPeer::connect(cfg).await;
    peer.send(Frame::Open {
        sender_id: 1,
        window: 1 << 20,
        max_packet: 1 << 16,
    })
    .await;
    let mut ch = within(5, "accept", session.accept()).await.unwrap();
    let Some(Frame::OpenConfirm { sender_id, .. }) = peer.recv().await else {
        panic!("expected OPEN_CONFIRM");
    };
    let data = pattern(64 * 1024, 0);
    for piece in data.chunks(1024) {
        peer.send(Frame::Data {
            recipient_id: sender_id,
            payload: bytes::Bytes::copy_from_slice(piece),
        })
        .await;
    }
    let mut got = vec![0u8; data.len()];
    for piece in got.chunks_mut(100) {
        within(5, "read", ch.read_exact(piece)).await.unwrap();
    }
    assert_eq!(got, data);
    let mut adjusts = Vec::new();
    while let Some(f) = peer.recv_within(100).await {
        if let Frame::WindowAdjust { bytes, .. } = f {
            adjusts.push(bytes);
        }
    }
    // 640 reads, but the window is returned in large steps (half a window at a time).
    let total: u32 = adjusts.iter().sum();
    assert!((32 * 1024..=64 * 1024).contains(&total), "{adjusts:?}");
    assert!(adjusts.len() <= 2, "{} adjusts: {adjusts:?}", adjusts.len());
}

/// A peer that, like qtalk-js, sends one packet of a long write and then waits for a
/// WINDOW_ADJUST before the next one, even with window left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_waiting_for_an_adjust_after_every_packet_never_stalls() {
    let config = Config::default();
    let max_packet = config.max_packet_size();
    let (mut peer, session) = RawPeer::connect(config).await;
    peer.send(Frame::Open {
        sender_id: 7,
        window: 1 << 20,
        max_packet: 1 << 15,
    })
    .await;
    let mut ch = within(5, "accept", session.accept()).await.unwrap();
    let ours = match within(5, "confirm", peer.recv()).await {
        Some(Frame::OpenConfirm { sender_id, .. }) => sender_id,
        other => panic!("{other:?}"),
    };
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 4 * max_packet as usize];
        ch.read_exact(&mut got).await.map(|_| got.len())
    });
    // A 1 MiB write in max-packet pieces, each one only after an adjust for the last.
    for _ in 0..4 {
        peer.send(Frame::Data {
            recipient_id: ours,
            payload: vec![9u8; max_packet as usize].into(),
        })
        .await;
        loop {
            match within(5, "an adjust for the packet", peer.recv()).await {
                Some(Frame::WindowAdjust { .. }) => break,
                Some(_) => {}
                None => panic!("session ended"),
            }
        }
    }
    let n = within(5, "reader", reader).await.unwrap().unwrap();
    assert_eq!(n, 4 * max_packet as usize);
}
