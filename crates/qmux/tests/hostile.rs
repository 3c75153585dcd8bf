//! Bad input from the peer: every case ends only the offending session, with a typed error
//! naming the cause, without panicking or allocating what the peer claims.

mod common;

use bytes::BytesMut;
use common::{within, RawPeer};
use qtalk_mux::qtalk_mux_proto::frame::{encode_data_header, MSG_OPEN};
use qtalk_mux::qtalk_mux_proto::Frame;
use qtalk_mux::{Config, Error, Listener, ProtocolError, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A raw peer plus the session under test, with one channel the raw peer opened and the
/// session accepted. Returns (peer, session, the session's channel, peer's id for it).
async fn with_open_channel(config: Config) -> (RawPeer, Session, qtalk_mux::Channel) {
    let (mut peer, session) = RawPeer::connect(config).await;
    peer.send(Frame::Open {
        sender_id: 7,
        window: 1 << 20,
        max_packet: 1 << 15,
    })
    .await;
    let ch = within(5, "accept", session.accept()).await.unwrap();
    match within(5, "confirm", peer.recv()).await {
        Some(Frame::OpenConfirm {
            recipient_id: 7, ..
        }) => {}
        other => panic!("expected OPEN_CONFIRM, got {other:?}"),
    }
    (peer, session, ch)
}

async fn ended_with(session: &Session) -> ProtocolError {
    match within(5, "session end", session.wait()).await {
        Error::Protocol(e) => e,
        other => panic!("expected a protocol error, got {other}"),
    }
}

#[tokio::test]
async fn unknown_message_type() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send_raw(&[0x07, 0, 0, 0, 0]).await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::UnknownFrameType { kind: 7 }
    );
    // The session closed the transport.
    assert!(within(5, "eof", peer.recv()).await.is_none());
}

#[tokio::test]
async fn frame_for_unknown_channel() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send(Frame::WindowAdjust {
        recipient_id: 5,
        bytes: 10,
    })
    .await;
    let e = ended_with(&session).await;
    assert!(
        matches!(e, ProtocolError::UnknownChannel { channel: 5, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("unknown channel 5"), "{e}");
}

#[tokio::test]
async fn data_for_unknown_channel() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    let mut b = BytesMut::new();
    encode_data_header(3, 4, &mut b);
    peer.send_raw(&b).await;
    let e = ended_with(&session).await;
    assert!(
        matches!(e, ProtocolError::UnknownChannel { channel: 3, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn data_over_max_packet_is_refused_before_its_payload() {
    let cfg = Config::builder()
        .max_packet(1024)
        .build()
        .expect("valid config");
    let (mut peer, session, _ch) = with_open_channel(cfg).await;
    // Only the header: the session must not wait for (or allocate) the claimed payload.
    let mut b = BytesMut::new();
    encode_data_header(0, 0xFFFF_FFFF, &mut b);
    peer.send_raw(&b).await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::PacketTooLarge {
            channel: 0,
            len: 0xFFFF_FFFF,
            max: 1024
        }
    );
}

#[tokio::test]
async fn data_over_window_is_refused_before_its_payload() {
    let cfg = Config::builder()
        .window(1000)
        .max_packet(4096)
        .build()
        .expect("valid config");
    let (mut peer, session, _ch) = with_open_channel(cfg).await;
    let mut b = BytesMut::new();
    encode_data_header(0, 600, &mut b);
    b.extend_from_slice(&[1u8; 600]);
    encode_data_header(0, 600, &mut b); // 1200 > 1000: header alone must trip it
    peer.send_raw(&b).await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::WindowExceeded {
            channel: 0,
            len: 600,
            window: 400
        }
    );
}

#[tokio::test]
async fn length_beyond_bytes_available_then_eof() {
    let (mut peer, session, mut ch) = with_open_channel(Config::default()).await;
    let mut b = BytesMut::new();
    encode_data_header(0, 100, &mut b);
    b.extend_from_slice(b"only ten b");
    peer.send_raw(&b).await;
    peer.io.shutdown().await.unwrap();
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::Truncated { missing: 90 }
    );
    // The bytes that did arrive are readable; then the read fails (no clean end-of-stream).
    let mut got = Vec::new();
    let err = within(5, "read", ch.read_to_end(&mut got))
        .await
        .unwrap_err();
    assert_eq!(got, b"only ten b");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn truncated_header_at_eof() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send_raw(&[MSG_OPEN, 0, 0]).await;
    peer.io.shutdown().await.unwrap();
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::Truncated { missing: 10 }
    );
}

#[tokio::test]
async fn window_overflow() {
    let (mut peer, session, _ch) = with_open_channel(Config::default()).await;
    // The peer granted 1 MiB in its OPEN; adding 2^32-1 overflows.
    peer.send(Frame::WindowAdjust {
        recipient_id: 0,
        bytes: u32::MAX,
    })
    .await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::WindowOverflow {
            channel: 0,
            window: 1 << 20,
            add: u32::MAX
        }
    );
}

#[tokio::test]
async fn duplicate_close() {
    let (mut peer, session, _ch) = with_open_channel(Config::default()).await;
    peer.send(Frame::Close { recipient_id: 0 }).await;
    assert_eq!(
        within(5, "close reply", peer.recv()).await,
        Some(Frame::Close { recipient_id: 7 })
    );
    peer.send(Frame::Close { recipient_id: 0 }).await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::DuplicateClose { channel: 0 }
    );
}

#[tokio::test]
async fn duplicate_close_after_the_channel_was_dropped() {
    let (mut peer, session, ch) = with_open_channel(Config::default()).await;
    drop(ch);
    assert_eq!(
        within(5, "close", peer.recv()).await,
        Some(Frame::Close { recipient_id: 7 })
    );
    peer.send(Frame::Close { recipient_id: 0 }).await;
    peer.send(Frame::Close { recipient_id: 0 }).await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::DuplicateClose { channel: 0 }
    );
}

#[tokio::test]
async fn open_confirm_for_a_channel_never_opened() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send(Frame::OpenConfirm {
        recipient_id: 0,
        sender_id: 1,
        window: 100,
        max_packet: 100,
    })
    .await;
    let e = ended_with(&session).await;
    assert!(
        matches!(
            e,
            ProtocolError::UnknownChannel {
                channel: 0,
                kind: 101
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn open_confirm_for_a_channel_the_peer_opened() {
    let (mut peer, session, _ch) = with_open_channel(Config::default()).await;
    peer.send(Frame::OpenConfirm {
        recipient_id: 0,
        sender_id: 1,
        window: 100,
        max_packet: 100,
    })
    .await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::UnexpectedOpenReply {
            kind: 101,
            channel: 0
        }
    );
}

#[tokio::test]
async fn open_confirm_with_bad_max_packet() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    let s2 = session.clone();
    let open = tokio::spawn(async move { s2.open().await });
    match within(5, "open", peer.recv()).await {
        Some(Frame::Open { sender_id: 0, .. }) => {}
        other => panic!("expected OPEN, got {other:?}"),
    }
    peer.send(Frame::OpenConfirm {
        recipient_id: 0,
        sender_id: 1,
        window: 100,
        max_packet: 8,
    })
    .await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::InvalidMaxPacket {
            channel: 0,
            max_packet: 8
        }
    );
    // The pending open fails with the session's error.
    let err = within(5, "open fails", open).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err}");
}

#[tokio::test]
async fn open_with_bad_max_packet_is_refused_not_fatal() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send(Frame::Open {
        sender_id: 3,
        window: 100,
        max_packet: 4,
    })
    .await;
    assert_eq!(
        within(5, "refusal", peer.recv()).await,
        Some(Frame::OpenFailure { recipient_id: 3 })
    );
    assert!(!session.is_closed());
}

#[tokio::test]
async fn late_frames_after_close_handshake_are_tolerated() {
    // The reference may still send DATA it had in flight after its CLOSE.
    let (mut peer, session, ch) = with_open_channel(Config::default()).await;
    drop(ch);
    assert_eq!(
        within(5, "close", peer.recv()).await,
        Some(Frame::Close { recipient_id: 7 })
    );
    peer.send(Frame::Close { recipient_id: 0 }).await;
    peer.send(Frame::Data {
        recipient_id: 0,
        payload: bytes::Bytes::from_static(b"late"),
    })
    .await;
    peer.send(Frame::WindowAdjust {
        recipient_id: 0,
        bytes: 4,
    })
    .await;
    // Still alive: a new channel works.
    peer.send(Frame::Open {
        sender_id: 8,
        window: 100,
        max_packet: 100,
    })
    .await;
    let _ch = within(5, "accept after late frames", session.accept())
        .await
        .unwrap();
    assert!(!session.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_on_the_listener_keep_working() {
    let listener = Listener::bind_tcp("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut sessions = Vec::new();
        for _ in 0..2 {
            let s = listener.accept().await.unwrap();
            sessions.push(s.clone());
            tokio::spawn(async move {
                while let Some(mut ch) = s.accept().await {
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let _ = ch.read_to_end(&mut buf).await;
                        let _ = ch.write_all(&buf).await;
                    });
                }
            });
        }
        sessions
    });
    let good = qtalk_mux::transport::connect_tcp(addr, Config::default())
        .await
        .unwrap();
    let mut bad = RawPeer::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let sessions = within(5, "accept both", server).await.unwrap();
    bad.send_raw(&[0xff; 32]).await;
    // Wait until one of the two server sessions ended with the protocol error.
    within(5, "bad session ends", async {
        loop {
            if sessions.iter().any(|s| s.is_closed()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let ended: Vec<_> = sessions.iter().filter(|s| s.is_closed()).collect();
    assert_eq!(ended.len(), 1);
    assert!(matches!(
        ended[0].wait().await,
        Error::Protocol(ProtocolError::UnknownFrameType { kind: 0xff })
    ));
    // The good session still works.
    let mut ch = within(5, "open", good.open()).await.unwrap();
    ch.write_all(b"still here").await.unwrap();
    ch.close_write().unwrap();
    let mut back = Vec::new();
    within(5, "echo", ch.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"still here");
}

/// Random garbage never panics the session: it ends with a protocol error or keeps running.
#[tokio::test]
async fn garbage_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..200 {
        let (mut peer, session) = RawPeer::connect(
            Config::builder()
                .max_packet(4096)
                .build()
                .expect("valid config"),
        )
        .await;
        let mut junk = vec![0u8; 1 + (round * 37) % 300];
        for b in junk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Bias towards valid type bytes so deeper paths are reached.
            *b = if seed % 4 == 0 {
                100 + (seed >> 8) as u8 % 7
            } else {
                (seed >> 16) as u8 % 8
            };
        }
        peer.send_raw(&junk).await;
        peer.io.shutdown().await.unwrap();
        // Whatever happens, the session ends (the peer hung up) without panicking.
        let _ = within(5, "end", session.wait()).await;
    }
}

#[tokio::test]
async fn late_data_for_a_reused_id_before_confirm_is_dropped() {
    // The reference may write DATA after its CLOSE; by then the id can be reused by a new open
    // (at once when reuse is not delayed).
    let (mut peer, session) = RawPeer::connect(
        Config::builder()
            .id_reuse_delay(0)
            .build()
            .expect("valid config"),
    )
    .await;
    let s2 = session.clone();
    let first = tokio::spawn(async move { s2.open().await });
    assert!(matches!(
        within(5, "open", peer.recv()).await,
        Some(Frame::Open { sender_id: 0, .. })
    ));
    peer.send(Frame::OpenConfirm {
        recipient_id: 0,
        sender_id: 5,
        window: 1000,
        max_packet: 1000,
    })
    .await;
    let ch = first.await.unwrap().unwrap();
    drop(ch);
    assert_eq!(
        within(5, "close", peer.recv()).await,
        Some(Frame::Close { recipient_id: 5 })
    );
    peer.send(Frame::Close { recipient_id: 0 }).await;
    within(5, "id freed", async {
        while session.channel_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    // Id 0 is reused for a new open ...
    let s2 = session.clone();
    let second = tokio::spawn(async move { s2.open().await });
    assert!(matches!(
        within(5, "open", peer.recv()).await,
        Some(Frame::Open { sender_id: 0, .. })
    ));
    // ... and a late DATA/EOF of the old channel arrives before the confirmation.
    peer.send(Frame::Data {
        recipient_id: 0,
        payload: bytes::Bytes::from_static(b"null\n"),
    })
    .await;
    peer.send(Frame::Eof { recipient_id: 0 }).await;
    peer.send(Frame::OpenConfirm {
        recipient_id: 0,
        sender_id: 6,
        window: 1000,
        max_packet: 1000,
    })
    .await;
    let mut ch = within(5, "second open", second).await.unwrap().unwrap();
    peer.send(Frame::Data {
        recipient_id: 0,
        payload: bytes::Bytes::from_static(b"fresh"),
    })
    .await;
    peer.send(Frame::Eof { recipient_id: 0 }).await;
    let mut got = Vec::new();
    within(5, "read", ch.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"fresh");
    assert!(!session.is_closed());
}

#[tokio::test]
async fn early_frames_before_the_confirmation_are_accepted() {
    // The reference hands an incoming channel to its application before it sends
    // OPEN_CONFIRM, so DATA, EOF and even CLOSE can overtake the confirmation.
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    let s2 = session.clone();
    let open = tokio::spawn(async move { s2.open().await });
    let Some(Frame::Open { sender_id, .. }) = within(5, "open", peer.recv()).await else {
        panic!("expected OPEN");
    };
    peer.send(Frame::Data {
        recipient_id: sender_id,
        payload: bytes::Bytes::from_static(b"early"),
    })
    .await;
    peer.send(Frame::Eof {
        recipient_id: sender_id,
    })
    .await;
    peer.send(Frame::Close {
        recipient_id: sender_id,
    })
    .await;
    peer.send(Frame::OpenConfirm {
        recipient_id: sender_id,
        sender_id: 9,
        window: 1000,
        max_packet: 1000,
    })
    .await;
    let mut ch = within(5, "open completes", open).await.unwrap().unwrap();
    // Our CLOSE follows, addressed to the id the confirmation gave.
    assert_eq!(
        within(5, "close", peer.recv()).await,
        Some(Frame::Close { recipient_id: 9 })
    );
    let mut got = Vec::new();
    within(5, "read", ch.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"early");
    drop(ch);
    within(5, "id freed", async {
        while session.channel_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(!session.is_closed());
}

#[tokio::test]
async fn early_data_beyond_the_opened_window_is_fatal() {
    let (mut peer, session) =
        RawPeer::connect(Config::builder().window(100).build().expect("valid config")).await;
    let s2 = session.clone();
    let _open = tokio::spawn(async move { s2.open().await });
    let _ = within(5, "open", peer.recv()).await;
    let mut b = BytesMut::new();
    encode_data_header(0, 101, &mut b);
    peer.send_raw(&b).await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::WindowExceeded {
            channel: 0,
            len: 101,
            window: 100
        }
    );
}

#[tokio::test]
async fn data_on_a_channel_we_have_not_confirmed_is_fatal() {
    let (mut peer, session) = RawPeer::connect(Config::default()).await;
    peer.send(Frame::Open {
        sender_id: 3,
        window: 100,
        max_packet: 100,
    })
    .await;
    // Nobody accepted yet: the peer cannot know our id for it.
    peer.send(Frame::Data {
        recipient_id: 0,
        payload: bytes::Bytes::from_static(b"guess"),
    })
    .await;
    assert_eq!(
        ended_with(&session).await,
        ProtocolError::NotYetOpen {
            kind: 104,
            channel: 0
        }
    );
}
