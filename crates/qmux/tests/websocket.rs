//! qmux over WebSocket: sessions of our own on both ends, and a raw tokio-tungstenite peer
//! that splits the stream at arbitrary message boundaries, as the reference's reader allows.
#![cfg(feature = "websocket")]

mod common;

use bytes::{Bytes, BytesMut};
use common::{basic_exchange, echo_all, echo_interleaved, pattern, within};
use futures_util::{SinkExt, StreamExt};
use qtalk_mux::qtalk_mux_proto::Frame;
use qtalk_mux::transport::ws::{connect_ws, tokio_tungstenite};
use qtalk_mux::{Config, Error, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A WebSocket listener and the `ws://` URL that reaches it.
async fn ws_listener(config: Config) -> (Listener, String) {
    let listener = Listener::bind_ws("127.0.0.1:0", config).await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    (listener, url)
}

/// Two sessions over a WebSocket on TCP loopback: (client, server).
async fn ws_pair(config: Config) -> (Session, Session) {
    let (listener, url) = ws_listener(config.clone()).await;
    let (client, server) = tokio::join!(connect_ws(&url, config), listener.accept());
    (client.unwrap(), server.unwrap())
}

/// The basic exchanges of `channels.rs`: hello + close, then echo with half-close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_websocket() {
    // Closing sends a WebSocket Close frame: the peer sees a clean end.
    let (a, b) = ws_pair(Config::default()).await;
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_interleaved_over_websocket() {
    let (a, b) = ws_pair(Config::default()).await;
    tokio::spawn(echo_all(b.clone()));
    echo_interleaved(&a, 64, 40_000).await;
    a.close();
    within(5, "peer end", b.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_over_websocket() {
    // More than one message's worth per write, and a small packet size: many frames per batch.
    let config = Config::builder()
        .max_packet(16 * 1024)
        .build()
        .expect("valid config");
    let (a, b) = ws_pair(config).await;
    tokio::spawn(echo_all(b.clone()));
    let ch = a.open().await.unwrap();
    let (mut r, mut w) = ch.into_split();
    let msg = pattern(6 << 20, 5);
    let m2 = msg.clone();
    let writer = tokio::spawn(async move {
        for part in m2.chunks(3 << 20) {
            w.write_all(part).await.unwrap();
        }
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::with_capacity(msg.len());
    within(30, "echo 6 MiB", r.read_to_end(&mut back))
        .await
        .unwrap();
    let _w = writer.await.unwrap();
    assert!(back == msg, "echo differs");
    a.close();
}

#[tokio::test]
async fn listener_accepts_any_path_and_handshakes_concurrently() {
    let (listener, url) = ws_listener(Config::default()).await;
    let addr = listener.local_addr().unwrap();
    // A client that connects and never completes its handshake holds up nobody.
    let _stalled = TcpStream::connect(addr).await.unwrap();
    // Nor does one that sends garbage instead of an upgrade request.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(b"hello?\r\n\r\n").await.unwrap();
    let with_path = format!("{}some/path?x=1", url.replace("ws://", "WS://"));
    let (client, server) = tokio::join!(
        within(5, "connect", connect_ws(&with_path, Config::default())),
        within(5, "accept", listener.accept())
    );
    let (client, server) = (client.unwrap(), server.unwrap());
    tokio::spawn(echo_all(server));
    let mut ch = client.open().await.unwrap();
    ch.write_all(b"ping").await.unwrap();
    ch.close_write().unwrap();
    let mut back = Vec::new();
    within(5, "echo", ch.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"ping");
    // The garbage connection was answered and dropped.
    let mut reply = Vec::new();
    within(5, "garbage refused", garbage.read_to_end(&mut reply))
        .await
        .ok();
    client.close();
}

#[tokio::test]
async fn refused_handshake_and_bad_urls() {
    // A plain HTTP server that refuses the upgrade, as the Go server does without Origin.
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = http.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let e = connect_ws(&format!("ws://{addr}/"), Config::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    assert!(e.to_string().contains("403"), "{e}");

    let e = connect_ws("wss://127.0.0.1:1/", Config::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("wss://"), "{e}");
    let e = connect_ws("tcp://127.0.0.1:1", Config::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
}

/// A hand-driven WebSocket peer speaking raw qmux frames.
struct RawWs {
    ws: WebSocketStream<TcpStream>,
    /// Received qmux bytes not yet decoded.
    buf: BytesMut,
    pongs: Vec<Bytes>,
    /// Binary messages received.
    messages: usize,
}

impl RawWs {
    /// A raw client connected (without `Origin`) to a new session behind `Listener::bind_ws`.
    async fn connect() -> (RawWs, Session) {
        let (listener, url) = ws_listener(Config::default()).await;
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (ws, session) = tokio::join!(tokio_tungstenite::client_async(url, tcp), async {
            listener.accept().await.unwrap()
        });
        let (ws, _) = ws.unwrap();
        (
            RawWs {
                ws,
                buf: BytesMut::new(),
                pongs: Vec::new(),
                messages: 0,
            },
            session,
        )
    }

    async fn send(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// Next frame from the session; `None` once the WebSocket ended.
    async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = Frame::decode(&mut self.buf, u32::MAX).unwrap() {
                return Some(f);
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    self.messages += 1;
                    self.buf.extend_from_slice(&b);
                }
                Some(Ok(Message::Pong(p))) => self.pongs.push(p),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(other)) => panic!("the session sent {other:?}"),
            }
        }
    }
}

fn encode(frames: &[Frame]) -> BytesMut {
    let mut b = BytesMut::new();
    for f in frames {
        f.encode(&mut b);
    }
    b
}

#[tokio::test]
async fn frames_split_and_joined_at_arbitrary_message_boundaries() {
    let (mut peer, session) = RawWs::connect().await;
    let server = tokio::spawn(async move {
        let mut ch = session.accept().await.unwrap();
        let mut got = Vec::new();
        ch.read_to_end(&mut got).await.unwrap();
        ch.write_all(&got.to_ascii_uppercase()).await.unwrap();
        ch.close().unwrap();
        session
    });

    // One OPEN frame (13 bytes) across three messages, a ping in between.
    let open = encode(&[Frame::Open {
        sender_id: 3,
        window: 1 << 20,
        max_packet: 1 << 15,
    }]);
    peer.send(Message::binary(open[..1].to_vec())).await;
    peer.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await;
    peer.send(Message::binary(open[1..6].to_vec())).await;
    peer.send(Message::binary(open[6..].to_vec())).await;
    let id = match within(5, "confirm", peer.recv()).await {
        Some(Frame::OpenConfirm {
            recipient_id: 3,
            sender_id,
            ..
        }) => sender_id,
        other => panic!("expected OPEN_CONFIRM, got {other:?}"),
    };

    // Several frames, cut at uneven points so that messages hold frame tails, whole frames
    // and frame heads together; one piece goes as a text message (all bytes are ASCII).
    let words: [&[u8]; 4] = [b"hello ", b"web", b"socket ", b"world"];
    let mut frames: Vec<Frame> = words
        .iter()
        .map(|w| Frame::Data {
            recipient_id: id,
            payload: Bytes::from_static(w),
        })
        .collect();
    frames.push(Frame::Eof { recipient_id: id });
    let stream = encode(&frames).freeze();
    assert!(stream.is_ascii());
    let mut at = 0;
    for (i, len) in [2usize, 11, 1, 20, 7, 3, 100].into_iter().enumerate() {
        let end = (at + len).min(stream.len());
        if at == end {
            break;
        }
        let piece = stream.slice(at..end);
        let m = if i == 3 {
            Message::text(String::from_utf8(piece.to_vec()).unwrap())
        } else {
            Message::Binary(piece)
        };
        peer.send(m).await;
        at = end;
    }
    assert_eq!(at, stream.len());

    let mut reply = Vec::new();
    loop {
        match within(5, "reply", peer.recv()).await {
            Some(Frame::Data {
                recipient_id: 3,
                payload,
            }) => reply.extend_from_slice(&payload),
            Some(Frame::WindowAdjust { .. }) => {}
            Some(Frame::Close { recipient_id: 3 }) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reply, b"HELLO WEBSOCKET WORLD");
    assert_eq!(peer.pongs, [Bytes::from_static(b"are you there")]);
    peer.send(Message::Binary(
        encode(&[Frame::Close { recipient_id: id }]).freeze(),
    ))
    .await;

    let session = server.await.unwrap();
    within(5, "id freed", async {
        while session.channel_count() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    session.close();
    // Closing the session sends a Close frame, then the connection ends.
    match within(5, "close frame", peer.ws.next()).await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected a Close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn batch_of_frames_goes_out_as_few_messages() {
    let (mut peer, session) = RawWs::connect().await;
    // A channel whose DATA frames carry at most 1 KiB: one 256 KiB write is 256 frames.
    peer.send(Message::Binary(
        encode(&[Frame::Open {
            sender_id: 0,
            window: 1 << 20,
            max_packet: 1024,
        }])
        .freeze(),
    ))
    .await;
    let mut ch = within(5, "accept", session.accept()).await.unwrap();
    match within(5, "confirm", peer.recv()).await {
        Some(Frame::OpenConfirm { .. }) => {}
        other => panic!("expected OPEN_CONFIRM, got {other:?}"),
    }
    let before = peer.messages;
    let data = pattern(256 * 1024, 1);
    ch.write_all(&data).await.unwrap();
    let mut got = Vec::new();
    let mut frames = 0;
    while got.len() < data.len() {
        match within(5, "data", peer.recv()).await {
            Some(Frame::Data { payload, .. }) => {
                assert!(payload.len() <= 1024);
                got.extend_from_slice(&payload);
                frames += 1;
            }
            other => panic!("expected DATA, got {other:?}"),
        }
    }
    assert_eq!(got, data);
    let messages = peer.messages - before;
    // Frames are batched into messages, not sent one per message (how many per message
    // depends on timing).
    assert!(
        messages * 8 <= frames,
        "{frames} frames in {messages} messages"
    );
    session.close();
}

#[tokio::test]
async fn session_ends_when_the_peer_sends_close() {
    let (mut peer, session) = RawWs::connect().await;
    peer.send(Message::Binary(
        encode(&[Frame::Open {
            sender_id: 0,
            window: 1 << 20,
            max_packet: 1 << 15,
        }])
        .freeze(),
    ))
    .await;
    let mut ch = within(5, "accept", session.accept()).await.unwrap();
    peer.ws.close(None).await.unwrap();
    let err = within(5, "session end", session.wait()).await;
    assert!(matches!(err, Error::PeerClosed), "{err}");
    let mut buf = Vec::new();
    assert!(ch.read_to_end(&mut buf).await.is_err());
    // The session answered the Close frame (tungstenite reports a completed handshake).
    loop {
        match within(5, "close reply", peer.ws.next()).await {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn session_ends_when_the_connection_drops_without_close() {
    let (peer, session) = RawWs::connect().await;
    drop(peer);
    let err = within(5, "session end", session.wait()).await;
    assert!(matches!(err, Error::PeerClosed), "{err}");
}

#[tokio::test]
async fn truncated_frame_at_the_end_is_a_protocol_error() {
    for close_frame in [true, false] {
        let (mut peer, session) = RawWs::connect().await;
        let open = encode(&[Frame::Open {
            sender_id: 0,
            window: 1 << 20,
            max_packet: 1 << 15,
        }]);
        peer.send(Message::binary(open[..5].to_vec())).await;
        if close_frame {
            peer.ws.close(None).await.unwrap();
        } else {
            drop(peer);
        }
        match within(5, "session end", session.wait()).await {
            Error::Protocol(_) => {}
            other => panic!("close frame {close_frame}: expected a protocol error, got {other}"),
        }
    }
}
