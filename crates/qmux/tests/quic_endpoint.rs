//! The QUIC client's endpoint: one UDP socket reused across connections, every resolved
//! address tried.
#![cfg(feature = "quic")]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::within;
use qtalk_mux::quic::Endpoint;
use qtalk_mux::{tls, Config, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A QUIC server on 127.0.0.1 echoing every channel of every session; its address and the
/// client TLS settings that trust it.
async fn echo_server() -> (SocketAddr, tls::rustls::ClientConfig) {
    let identity = tls::self_signed(&["localhost"]).unwrap();
    let server = tls::server_config(identity.certs.clone(), identity.key).unwrap();
    let listener = Listener::bind_quic("127.0.0.1:0", server, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok(session) = listener.accept().await {
            tokio::spawn(common::echo_all(session));
        }
    });
    (addr, tls::client_config(identity.certs).unwrap())
}

async fn echo_once(session: &Session, msg: &[u8]) {
    let mut ch = session.open().await.unwrap();
    ch.write_all(msg).await.unwrap();
    ch.close_write().unwrap();
    let mut back = Vec::new();
    within(10, "echo", ch.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_endpoint_serves_many_connections() {
    let (addr, tls) = echo_server().await;
    let endpoint = Endpoint::new();
    let mut sessions = Vec::new();
    for i in 0..20u8 {
        let session = within(
            10,
            "connect",
            endpoint.connect(addr, "localhost", tls.clone(), Config::default()),
        )
        .await
        .unwrap();
        echo_once(&session, &[i; 100]).await;
        sessions.push(session);
    }
    // All of them at once, over one socket.
    assert_eq!(endpoint.local_addrs().len(), 1, "{endpoint:?}");
    for (i, session) in sessions.iter().enumerate() {
        echo_once(session, &[i as u8; 1000]).await;
    }
    for session in &sessions {
        session.close();
    }
    for session in sessions {
        within(10, "end", session.wait()).await;
    }
    // And the socket stays for the next connection.
    let port = endpoint.local_addrs()[0].port();
    let again = endpoint
        .connect(addr, "localhost", tls, Config::default())
        .await
        .unwrap();
    echo_once(&again, b"again").await;
    assert_eq!(endpoint.local_addrs()[0].port(), port);
    again.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_with_one_config_share_its_endpoint() {
    let (addr, tls) = echo_server().await;
    let config = Config::default();
    assert!(
        config.quic_endpoint().local_addrs().is_empty(),
        "bound before use"
    );
    let a = qtalk_mux::quic::connect(addr, "localhost", tls.clone(), config.clone())
        .await
        .unwrap();
    let b = qtalk_mux::quic::connect(addr, "localhost", tls.clone(), config.clone())
        .await
        .unwrap();
    echo_once(&a, b"a").await;
    echo_once(&b, b"b").await;
    assert_eq!(config.quic_endpoint().local_addrs().len(), 1);
    // An explicit endpoint, given to two configurations.
    let shared = Endpoint::new();
    let one = Config::builder()
        .quic_endpoint(shared.clone())
        .build()
        .unwrap();
    let two = Config::builder()
        .quic_endpoint(shared.clone())
        .window(1 << 20)
        .build()
        .unwrap();
    let c = qtalk_mux::quic::connect(addr, "localhost", tls.clone(), one)
        .await
        .unwrap();
    let d = qtalk_mux::quic::connect(addr, "localhost", tls, two)
        .await
        .unwrap();
    echo_once(&c, b"c").await;
    echo_once(&d, b"d").await;
    assert_eq!(shared.local_addrs().len(), 1);
    assert_ne!(shared.local_addrs(), config.quic_endpoint().local_addrs());
    for s in [a, b, c, d] {
        s.close();
    }
}

#[tokio::test]
async fn localhost_reaches_a_server_on_127_0_0_1() {
    let (addr, tls) = echo_server().await;
    let session = within(
        20,
        "connect by name",
        qtalk_mux::quic::connect(
            ("localhost", addr.port()),
            "localhost",
            tls,
            Config::default(),
        ),
    )
    .await
    .unwrap();
    echo_once(&session, b"by name").await;
    session.close();
}

#[tokio::test]
async fn every_resolved_address_is_tried() {
    let (addr, tls) = echo_server().await;
    // A socket that never answers comes first: its handshake hangs, so the next address is
    // tried beside it after the attempt delay.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    // One nothing can be sent to fails at once.
    let unreachable: SocketAddr = "0.0.0.0:9".parse().unwrap();
    let config = Config::builder()
        .connect_attempt_delay(Duration::from_millis(50))
        .build()
        .unwrap();
    let addrs = [silent_addr, unreachable, addr];
    let session = within(
        20,
        "connect past a silent address",
        qtalk_mux::quic::connect(&addrs[..], "localhost", tls.clone(), config.clone()),
    )
    .await
    .unwrap();
    echo_once(&session, b"third time lucky").await;
    session.close();

    // Nothing answers: the last error is reported, once every attempt failed.
    let quick = Config::builder()
        .idle_timeout(Duration::from_millis(300))
        .connect_attempt_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let err = within(
        20,
        "all fail",
        qtalk_mux::quic::connect(&[silent_addr, silent_addr][..], "localhost", tls, quick),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    drop(silent);
}

#[test]
fn an_endpoint_outlives_the_runtime_that_bound_it() {
    // The socket's driver runs on the runtime of its first connection; once that runtime is
    // gone, the endpoint binds anew rather than hanging.
    let endpoint = Endpoint::new();
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let (addr, tls) = server_rt.block_on(echo_server());
    for round in 0..2u8 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let session = within(
                10,
                "connect",
                endpoint.connect(addr, "localhost", tls.clone(), Config::default()),
            )
            .await
            .unwrap();
            echo_once(&session, &[round; 10]).await;
            session.close();
            within(5, "end", session.wait()).await;
        });
    }
}
