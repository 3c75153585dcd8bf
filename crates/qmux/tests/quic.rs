//! QUIC as the base layer: sessions of our own on both ends of a real UDP connection.
#![cfg(feature = "quic")]

mod common;

use common::{basic_exchange, echo_all, echo_interleaved, pattern, within};
use qtalk_mux::{tls, Config, Error, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A QUIC listener with a fresh self-signed certificate, and the client TLS settings that
/// trust it.
async fn quic_listener(config: Config) -> (Listener, qtalk_mux::tls::rustls::ClientConfig) {
    let identity = tls::self_signed(&["localhost"]).unwrap();
    let server = tls::server_config(identity.certs.clone(), identity.key).unwrap();
    let listener = Listener::bind_quic("127.0.0.1:0", server, config)
        .await
        .unwrap();
    (listener, tls::client_config(identity.certs).unwrap())
}

/// Two sessions over QUIC on loopback: (client, server).
async fn quic_pair(config: Config) -> (Session, Session) {
    let (listener, client_tls) = quic_listener(config.clone()).await;
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::quic::connect(addr, "localhost", client_tls, config),
        listener.accept()
    );
    (client.unwrap(), server.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_quic() {
    let (a, b) = quic_pair(Config::default()).await;
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_interleaved_over_quic() {
    // More channels than the peer lets be open at once: opens wait for streams to end.
    let (a, b) = quic_pair(
        Config::builder()
            .max_channels(16)
            .build()
            .expect("valid config"),
    )
    .await;
    tokio::spawn(echo_all(b.clone()));
    echo_interleaved(&a, 64, 40_000).await;
    a.close();
    within(5, "peer end", b.wait()).await;
}

/// Runs `exchanges` exchanges of `client` over a QUIC pair whose stream limit is 8, the
/// server answering each channel with `serve`: they stall at the limit if streams are not
/// freed.
async fn past_the_stream_limit<S, SF, C, CF>(exchanges: u32, serve: S, client: C)
where
    S: Fn(qtalk_mux::Channel) -> SF + Send + 'static,
    SF: std::future::Future<Output = ()> + Send + 'static,
    C: Fn(qtalk_mux::Channel, u32) -> CF,
    CF: std::future::Future<Output = ()>,
{
    let (a, b) = quic_pair(
        Config::builder()
            .max_channels(8)
            .build()
            .expect("valid config"),
    )
    .await;
    let server = b.clone();
    tokio::spawn(async move {
        while let Some(ch) = server.accept().await {
            tokio::spawn(serve(ch));
        }
    });
    within(20, "exchanges past a stream limit of 8", async {
        for i in 0..exchanges {
            client(a.open().await.unwrap(), i).await;
        }
    })
    .await;
    a.close();
    within(5, "peer end", b.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_the_acceptor_stops_free_their_streams() {
    // The shape of an RPC call: the opener writes a request and keeps its side open; the
    // acceptor replies, finishes and drops its channel unread to the end (STOP_SENDING); the
    // opener reads the reply and drops. The opener's stopped stream must be reset for the
    // acceptor to free it.
    let serve = |mut ch: qtalk_mux::Channel| async move {
        let mut req = [0u8; 4];
        if ch.read_exact(&mut req).await.is_ok() {
            let _ = ch.write_all(&req).await;
        }
    };
    let client = |mut ch: qtalk_mux::Channel, i: u32| async move {
        ch.write_all(&i.to_be_bytes()).await.unwrap();
        let mut back = [0u8; 4];
        ch.read_exact(&mut back).await.unwrap();
        assert_eq!(u32::from_be_bytes(back), i);
    };
    past_the_stream_limit(200, serve, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stopped_unread_free_their_streams() {
    // The other order: the opener finishes its request, the acceptor replies and drops, and
    // the opener drops without reading the reply (STOP_SENDING once the reply may be
    // finished, or before). Either way the acceptor's stream must end.
    let serve = |mut ch: qtalk_mux::Channel| async move {
        let mut req = Vec::new();
        if ch.read_to_end(&mut req).await.is_ok() {
            let _ = ch.write_all(&vec![1u8; 64 * 1024]).await;
        }
    };
    let client = |mut ch: qtalk_mux::Channel, i: u32| async move {
        ch.write_all(&i.to_be_bytes()).await.unwrap();
        ch.close_write().unwrap();
        let mut first = [0u8; 1];
        ch.read_exact(&mut first).await.unwrap();
    };
    past_the_stream_limit(200, serve, client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_with_zero_copy_halves() {
    // A window smaller than the payload: QUIC's flow control holds the writer back.
    let (a, b) = quic_pair(
        Config::builder()
            .window(256 * 1024)
            .build()
            .expect("valid config"),
    )
    .await;
    tokio::spawn(echo_all(b.clone()));
    let ch = a.open().await.unwrap();
    let (mut r, mut w) = ch.into_split();
    let msg = pattern(8 << 20, 5);
    let m2 = bytes::Bytes::from(msg.clone());
    let writer = tokio::spawn(async move {
        for k in 0..8 {
            w.write_bytes(m2.slice(k << 20..(k + 1) << 20))
                .await
                .unwrap();
        }
        w.close_write().unwrap();
        w
    });
    let mut back = Vec::with_capacity(msg.len());
    within(30, "echo 8 MiB", async {
        while let Some(chunk) = r.read_chunk(64 * 1024).await.unwrap() {
            assert!(chunk.len() <= 64 * 1024);
            back.extend_from_slice(&chunk);
        }
    })
    .await;
    let _w = writer.await.unwrap();
    assert!(back == msg, "echo differs");
    a.close();
}

#[tokio::test]
async fn opener_sees_eof_and_acceptor_sees_no_marker() {
    let (a, b) = quic_pair(Config::default()).await;
    let mut ch = a.open().await.unwrap();
    // An open with nothing written: the peer's first read is already end-of-stream, the
    // announcement byte is not data.
    ch.close_write().unwrap();
    let mut accepted = within(5, "accept", b.accept()).await.unwrap();
    let mut buf = Vec::new();
    within(5, "read", accepted.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(buf.is_empty(), "{buf:?}");
    assert_eq!(accepted.read_chunk(16).await.unwrap(), None);
    // Ids are the QUIC stream ids: the client's first bidirectional stream is 0 on both sides.
    assert_eq!(ch.id().get(), 0);
    assert_eq!(accepted.id().get(), 0);
    accepted.write_all(b"late").await.unwrap();
    accepted.close_write().unwrap();
    let mut reply = String::new();
    within(5, "reply", ch.read_to_string(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply, "late");
    assert_eq!(a.channel_count(), 1);
    drop(ch);
    assert_eq!(a.channel_count(), 0);
    a.close();
}

#[tokio::test]
async fn dropping_a_channel_stops_the_peer_writing() {
    let (a, b) = quic_pair(
        Config::builder()
            .window(64 * 1024)
            .build()
            .expect("valid config"),
    )
    .await;
    let ch = a.open().await.unwrap();
    let mut accepted = within(5, "accept", b.accept()).await.unwrap();
    drop(ch);
    // The writer learns that nobody reads (STOP_SENDING) instead of blocking on the window.
    let chunk = vec![7u8; 32 * 1024];
    let err = within(10, "write fails", async {
        loop {
            if let Err(e) = accepted.write_all(&chunk).await {
                return e;
            }
        }
    })
    .await;
    assert_ne!(err.kind(), std::io::ErrorKind::Other, "{err}");
    a.close();
}

#[tokio::test]
async fn closing_the_session_ends_both_sides() {
    let (a, b) = quic_pair(Config::default()).await;
    let b2 = b.clone();
    let acceptor = tokio::spawn(async move { b2.accept().await.is_none() });
    b.close();
    assert!(b.is_closed());
    assert!(matches!(within(5, "wait", b.wait()).await, Error::Closed));
    assert!(acceptor.await.unwrap(), "accept ends with None");
    let err = within(5, "peer wait", a.wait()).await;
    assert!(matches!(err, Error::PeerClosed), "{err}");
    assert!(a.is_closed());
    assert!(within(5, "open after end", a.open()).await.is_err());
    assert!(a.accept().await.is_none());
}

#[tokio::test]
async fn untrusted_certificate_or_wrong_name_is_refused() {
    let (listener, _) = quic_listener(Config::default()).await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });

    let other = tls::self_signed(&["localhost"]).unwrap();
    let untrusting = tls::client_config(other.certs).unwrap();
    let err = within(
        10,
        "untrusted",
        qtalk_mux::quic::connect(addr, "localhost", untrusting, Config::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // The insecure settings skip verification, as the reference's checker does.
    let session = within(
        10,
        "insecure",
        qtalk_mux::quic::connect(
            addr,
            "elsewhere",
            tls::insecure_client_config(),
            Config::default(),
        ),
    )
    .await
    .unwrap();
    session.close();
}

#[tokio::test]
async fn alpn_must_match() {
    let (listener, mut client_tls) = quic_listener(Config::default()).await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    client_tls.alpn_protocols = vec![b"h3".to_vec()];
    let result = within(
        10,
        "alpn",
        qtalk_mux::quic::connect(addr, "localhost", client_tls, Config::default()),
    )
    .await;
    assert!(result.is_err(), "a client offering only h3 must be refused");
}

#[tokio::test]
async fn pem_files_load_and_bad_ones_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("qmux-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_pem, key_pem) = tls::self_signed_pem(&["localhost"]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), key_pem).unwrap();
    let certs = tls::load_certs(dir.join("cert.pem")).unwrap();
    let key = tls::load_key(dir.join("key.pem")).unwrap();
    let listener = Listener::bind_quic(
        "127.0.0.1:0",
        tls::server_config(certs.clone(), key).unwrap(),
        Config::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let client_tls = tls::client_config(certs).unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::quic::connect(addr, "localhost", client_tls, Config::default()),
        listener.accept()
    );
    let (client, server) = (client.unwrap(), server.unwrap());
    client.close();
    within(5, "peer end", server.wait()).await;

    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a pem file\n").unwrap();
    let err = tls::load_certs(&empty).unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
    assert!(tls::load_key(&empty).is_err());
    assert!(tls::load_certs(dir.join("missing.pem")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_before_close_is_delivered() {
    // As over qmux, closing the session right after writing still delivers what was written.
    let (a, b) = quic_pair(Config::default()).await;
    let payload = pattern(2 << 20, 9);
    let expected = payload.clone();
    let server = tokio::spawn(async move {
        let mut ch = b.accept().await.unwrap();
        ch.write_all(&payload).await.unwrap();
        ch.close_write().unwrap();
        drop(ch);
        b.close();
        assert!(b.is_closed());
        assert!(b.open().await.is_err(), "no opens once closing");
        b.wait().await
    });
    let mut ch = a.open().await.unwrap();
    let mut got = Vec::new();
    within(10, "read all", ch.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(
        got == expected,
        "got {} of {} bytes",
        got.len(),
        expected.len()
    );
    let end = within(10, "server end", server).await.unwrap();
    assert!(matches!(end, Error::Closed), "{end}");
    let end = within(10, "client end", a.wait()).await;
    assert!(matches!(end, Error::PeerClosed), "{end}");
}

#[test]
fn dropped_channels_spawn_nothing_and_no_task_outlives_the_session() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let (listener, client_tls) = quic_listener(Config::default()).await;
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(
            qtalk_mux::quic::connect(addr, "localhost", client_tls, Config::default()),
            listener.accept()
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let with_sessions = metrics.num_alive_tasks();
        // Many channels written and dropped on both sides: their finished streams wait for
        // acknowledgement in each session's list, not in a task apiece.
        for _ in 0..50 {
            let (ch, accepted) = tokio::join!(a.open(), b.accept());
            let (mut ch, mut accepted) = (ch.unwrap(), accepted.unwrap());
            ch.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            accepted.read_exact(&mut buf).await.unwrap();
            accepted.write_all(b"pong").await.unwrap();
            ch.read_exact(&mut buf).await.unwrap();
            drop((ch, accepted));
            assert!(
                metrics.num_alive_tasks() <= with_sessions,
                "a dropped channel spawned a task"
            );
        }
        a.close();
        within(5, "server side ends", b.wait()).await;
        within(5, "client side ends", a.wait()).await;
        drop((a, b, listener));
        within(5, "tasks end", async {
            while metrics.num_alive_tasks() > before {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
    });
}
