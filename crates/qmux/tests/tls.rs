//! qmux inside TLS: over TCP (`connect_tls`, `Listener::bind_tls`) and WebSocket (`wss://`).
#![cfg(feature = "tls")]

mod common;

use common::{basic_exchange, within};
use qtalk_mux::{tls, Config, Listener, Session};

/// A certificate for localhost: the server's settings and the client's that trust it.
fn identity() -> (
    qtalk_mux::tls::rustls::ServerConfig,
    qtalk_mux::tls::rustls::ClientConfig,
) {
    let id = tls::self_signed(&["localhost"]).unwrap();
    (
        tls::server_config(id.certs.clone(), id.key).unwrap(),
        tls::client_config(id.certs).unwrap(),
    )
}

async fn tls_pair() -> (Session, Session) {
    let (server_tls, client_tls) = identity();
    let listener = Listener::bind_tls("127.0.0.1:0", server_tls, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::transport::connect_tls(addr, "localhost", client_tls, Config::default()),
        listener.accept()
    );
    (client.unwrap(), server.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_tls() {
    let (a, b) = tls_pair().await;
    basic_exchange(a, b).await;
}

#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_wss() {
    let (server_tls, client_tls) = identity();
    let listener = Listener::bind_wss("127.0.0.1:0", server_tls, Config::default())
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/", listener.local_addr().unwrap().port());
    let (client, server) = tokio::join!(
        qtalk_mux::transport::connect_wss(&url, client_tls, Config::default()),
        listener.accept()
    );
    basic_exchange(client.unwrap(), server.unwrap()).await;
}

#[tokio::test]
async fn failed_handshakes_are_skipped_and_untrusted_servers_refused() {
    let (server_tls, client_tls) = identity();
    let listener = Listener::bind_tls("127.0.0.1:0", server_tls, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move { listener.accept().await.map(|_| ()) });

    // A plain qmux client: its handshake fails, nothing is accepted for it.
    let plain = qtalk_mux::transport::connect_tcp(addr, Config::default())
        .await
        .unwrap();
    let _ = plain
        .open_timeout(std::time::Duration::from_millis(300))
        .await;
    // A client that trusts another certificate refuses the server.
    let other = tls::client_config(tls::self_signed(&["localhost"]).unwrap().certs).unwrap();
    let err = within(
        5,
        "untrusted",
        qtalk_mux::transport::connect_tls(addr, "localhost", other, Config::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // A name the certificate does not carry is refused too.
    let err = within(
        5,
        "wrong name",
        qtalk_mux::transport::connect_tls(
            addr,
            "example.com",
            client_tls.clone(),
            Config::default(),
        ),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(
        !accepting.is_finished(),
        "no session from failed handshakes"
    );
    // The listener still serves a good client.
    let good = within(
        5,
        "good client",
        qtalk_mux::transport::connect_tls(addr, "localhost", client_tls, Config::default()),
    )
    .await
    .unwrap();
    within(5, "accepted", accepting).await.unwrap().unwrap();
    good.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_at_the_handshake_deadline_and_holds_up_no_one_for_longer() {
    use tokio::io::AsyncReadExt;
    let (server_tls, client_tls) = identity();
    // One handshake at a time, 300 ms each.
    let config = Config::builder()
        .max_handshakes(1)
        .handshake_timeout(std::time::Duration::from_millis(300))
        .build()
        .expect("valid config");
    let listener = Listener::bind_tls("127.0.0.1:0", server_tls, config)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
    // A slowloris client: connects and says nothing. It takes the only handshake slot.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let honest = tokio::spawn(qtalk_mux::transport::connect_tls(
        addr,
        "localhost",
        client_tls,
        Config::default(),
    ));
    // The server gives up on the silent one (closes it)...
    let mut buf = [0u8; 64];
    let n = within(5, "silent connection closed", silent.read(&mut buf)).await;
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // ...and then serves the honest client.
    within(5, "honest client", honest).await.unwrap().unwrap();
    within(5, "accepted", accepting).await.unwrap().unwrap();
}
