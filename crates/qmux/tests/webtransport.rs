//! WebTransport as the base layer: sessions of our own on both ends of a real UDP connection,
//! the server dispatching WebTransport and QUIC by ALPN on one port.
#![cfg(feature = "webtransport")]

mod common;

use common::{basic_exchange, echo_all, echo_interleaved, pattern, within};
use qtalk_mux::tls::{self, CertificateHash};
use qtalk_mux::{Config, Error, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A listener for WebTransport and QUIC with a certificate browsers accept by hash, and that
/// hash.
async fn wt_listener(config: Config) -> (Listener, CertificateHash) {
    let identity = tls::self_signed_for_browsers(&["localhost"]).unwrap();
    let hash = CertificateHash::of(&identity.certs[0]);
    let server = tls::server_config(identity.certs, identity.key).unwrap();
    let listener = Listener::bind_webtransport("127.0.0.1:0", server, config)
        .await
        .unwrap();
    (listener, hash)
}

fn url(listener: &Listener) -> String {
    format!(
        "https://localhost:{}/qtalk",
        listener.local_addr().unwrap().port()
    )
}

/// Two sessions over WebTransport on loopback: (client, server).
async fn wt_pair(config: Config) -> (Session, Session) {
    let (listener, hash) = wt_listener(config.clone()).await;
    let tls = tls::hash_pinned_client_config([hash]).unwrap();
    let url = url(&listener);
    let (client, server) = within(10, "connect", async {
        tokio::join!(
            qtalk_mux::webtransport::connect(&url, tls, config),
            listener.accept()
        )
    })
    .await;
    (client.unwrap(), server.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_webtransport() {
    let (a, b) = wt_pair(Config::default()).await;
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_interleaved_over_webtransport() {
    // More channels than the peer lets be open at once: opens wait for streams to end.
    let (a, b) = wt_pair(Config::builder().max_channels(16).build().unwrap()).await;
    tokio::spawn(echo_all(b.clone()));
    echo_interleaved(&a, 64, 40_000).await;
    a.close();
    within(5, "peer end", b.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_both_ways_over_webtransport() {
    // A window smaller than the payload, so that flow control holds the writers back.
    let config = Config::builder().window(1 << 20).build().unwrap();
    let (a, b) = wt_pair(config).await;
    tokio::spawn(echo_all(b.clone()));
    let (mut r, mut w) = a.open().await.unwrap().into_split();
    let msg = bytes::Bytes::from(pattern(16 << 20, 3));
    let sent = msg.clone();
    let writer = tokio::spawn(async move {
        // In 1 MiB writes, as a browser page would.
        for k in 0..16 {
            w.write_bytes(sent.slice(k << 20..(k + 1) << 20))
                .await
                .unwrap();
        }
        w.close_write().unwrap();
        w
    });
    let mut back = Vec::with_capacity(msg.len());
    within(60, "echo 16 MiB", async {
        while let Some(chunk) = r.read_chunk(256 * 1024).await.unwrap() {
            back.extend_from_slice(&chunk);
        }
    })
    .await;
    let _w = writer.await.unwrap();
    assert_eq!(back.len(), msg.len());
    assert!(back == msg, "echo differs");
    a.close();
    within(5, "peer end", b.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_and_webtransport_share_one_port() {
    // One listener, two kinds of clients, told apart by ALPN alone.
    let identity = tls::self_signed_for_browsers(&["localhost"]).unwrap();
    let hash = CertificateHash::of(&identity.certs[0]);
    let roots = identity.certs.clone();
    let server = tls::server_config(identity.certs, identity.key).unwrap();
    let listener = Listener::bind_webtransport("127.0.0.1:0", server, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let wt_url = url(&listener);
    let served = tokio::spawn(async move {
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let session = listener.accept().await.unwrap();
            let mut ch = session.accept().await.unwrap();
            let mut name = String::new();
            ch.read_to_string(&mut name).await.unwrap();
            ch.write_all(format!("{name} over {}", session_kind(&session)).as_bytes())
                .await
                .unwrap();
            ch.close_write().unwrap();
            kinds.push(session);
        }
        kinds
    });

    let quic = qtalk_mux::quic::connect(
        addr,
        "localhost",
        tls::client_config(roots).unwrap(),
        Config::default(),
    );
    let quic = within(10, "quic connect", quic).await.unwrap();
    assert_eq!(hello(&quic, "quic client").await, "quic client over quic");

    let pinned = tls::hash_pinned_client_config([hash]).unwrap();
    let wt = qtalk_mux::webtransport::connect(&wt_url, pinned, Config::default());
    let wt = within(10, "webtransport connect", wt).await.unwrap();
    assert_eq!(hello(&wt, "browser").await, "browser over webtransport");

    let servers = within(10, "served", served).await.unwrap();
    quic.close();
    wt.close();
    for s in servers {
        let end = within(5, "server end", s.wait()).await;
        assert!(matches!(end, Error::PeerClosed), "{end}");
    }
}

/// How the server tells which base layer a session runs on: its `Debug` text.
fn session_kind(session: &Session) -> &'static str {
    let text = format!("{session:?}");
    if text.contains("webtransport") {
        "webtransport"
    } else if text.contains("quic") {
        "quic"
    } else {
        "qmux"
    }
}

/// Opens a channel, sends `name`, returns the reply.
async fn hello(session: &Session, name: &str) -> String {
    let mut ch = session.open().await.unwrap();
    ch.write_all(name.as_bytes()).await.unwrap();
    ch.close_write().unwrap();
    let mut reply = String::new();
    within(10, "reply", ch.read_to_string(&mut reply))
        .await
        .unwrap();
    reply
}

#[tokio::test]
async fn a_wrong_hash_or_name_is_refused() {
    let (listener, hash) = wt_listener(Config::default()).await;
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let other = tls::self_signed_for_browsers(&["localhost"]).unwrap();
    let wrong = tls::hash_pinned_client_config([CertificateHash::of(&other.certs[0])]).unwrap();
    let url = format!("https://localhost:{port}/");
    let err = within(
        10,
        "wrong hash",
        qtalk_mux::webtransport::connect(&url, wrong, Config::default()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Verified by CA roots, the certificate must name the host.
    let roots = tls::client_config(other.certs).unwrap();
    assert!(
        qtalk_mux::webtransport::connect(&url, roots, Config::default())
            .await
            .is_err()
    );
    // The right hash, whatever the name.
    let pinned = tls::hash_pinned_client_config([hash]).unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    let session = within(
        10,
        "pinned",
        qtalk_mux::webtransport::connect(&url, pinned, Config::default()),
    )
    .await
    .unwrap();
    session.close();
    assert!(qtalk_mux::webtransport::connect(
        "http://localhost:1/",
        tls::insecure_client_config(),
        Config::default()
    )
    .await
    .unwrap_err()
    .to_string()
    .contains("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_channel_stops_the_peer_and_tells_its_watch() {
    let (a, b) = wt_pair(Config::builder().window(64 * 1024).build().unwrap()).await;
    let ch = a.open().await.unwrap();
    let accepted = within(5, "accept", b.accept()).await.unwrap();
    let (_r, mut w) = accepted.into_split();
    let watch = w.peer_closed();
    let second = w.peer_closed();
    drop(ch);
    // Code 42 travels in WebTransport's range; the writer learns nobody reads.
    within(10, "peer_closed", watch).await;
    within(10, "a second watch", second).await;
    let chunk = vec![7u8; 32 * 1024];
    let err = within(10, "write fails", async {
        loop {
            if let Err(e) = w.write_all(&chunk).await {
                return e;
            }
        }
    })
    .await;
    assert_ne!(err.kind(), std::io::ErrorKind::Other, "{err}");
    a.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_before_close_is_delivered_and_both_sides_end() {
    let (a, b) = wt_pair(Config::default()).await;
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
    assert!(a.accept().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_the_peer_drops_at_once_is_still_open() {
    // Over WebTransport the peer sees a stream by its header, before the `!` byte: it may
    // accept and drop (stop) it before that byte is written. The open still succeeds, and
    // reads the peer's end.
    let (a, b) = wt_pair(Config::default()).await;
    let dropper = tokio::spawn(async move {
        while let Some(ch) = b.accept().await {
            drop(ch);
        }
    });
    for _ in 0..50 {
        let mut ch = within(5, "open", a.open()).await.unwrap();
        let mut rest = Vec::new();
        within(5, "peer's end", ch.read_to_end(&mut rest))
            .await
            .unwrap();
        assert!(rest.is_empty());
    }
    a.close();
    within(5, "server end", dropper).await.unwrap();
}

#[test]
fn the_browser_certificate_is_p256_and_short_lived() {
    let identity = tls::self_signed_for_browsers(&["localhost", "127.0.0.1"]).unwrap();
    let der = identity.certs[0].as_ref();
    // id-ecPublicKey with the prime256v1 curve.
    let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    assert!(der.windows(p256.len()).any(|w| w == p256), "not P-256");
    // The validity: two UTCTimes, YYMMDDHHMMSSZ; browsers refuse more than 14 days in all.
    let times: Vec<i64> = der
        .windows(15)
        .filter(|w| w[0] == 0x17 && w[1] == 13 && w[14] == b'Z')
        .map(|w| utc_seconds(&w[2..14]))
        .collect();
    let (not_before, not_after) = (times[0], times[1]);
    assert!(not_after - not_before <= 14 * 24 * 3600, "{times:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        not_before <= now && now < not_after,
        "not valid now: {times:?}"
    );
    assert!(
        not_after - now >= 12 * 24 * 3600,
        "expires too soon: {times:?}"
    );
    let hash = CertificateHash::of(&identity.certs[0]);
    let text = hash.to_string();
    assert_eq!(text.parse::<CertificateHash>().unwrap(), hash);
    let colons: Vec<String> = hash.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
    assert_eq!(colons.join(":").parse::<CertificateHash>().unwrap(), hash);
    assert!("abc".parse::<CertificateHash>().is_err());
    assert!(tls::hash_pinned_client_config([]).is_err());
}

/// Seconds since 1970 of an ASN.1 UTCTime's digits (YYMMDDHHMMSS, years 2000-2049).
fn utc_seconds(digits: &[u8]) -> i64 {
    let n = |i: usize| i64::from((digits[i] - b'0') * 10 + (digits[i + 1] - b'0'));
    let (y, m, d) = (2000 + n(0), n(2), n(4));
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(6) * 3600 + n(8) * 60 + n(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_know_the_connection_and_the_server_its_path_and_query() {
    let (listener, hash) = wt_listener(Config::default()).await;
    let tls = tls::hash_pinned_client_config([hash]).unwrap();
    let url = format!("{}?token=abc", url(&listener));
    let (client, server) = within(10, "connect", async {
        tokio::join!(
            qtalk_mux::webtransport::connect(&url, tls, Config::default()),
            listener.accept()
        )
    })
    .await;
    let (client, server) = (client.unwrap(), server.unwrap());
    let (c, s) = (client.connection_info(), server.connection_info());
    assert_eq!(c.transport(), qtalk_mux::TransportKind::WebTransport);
    assert_eq!(s.transport(), qtalk_mux::TransportKind::WebTransport);
    // The client's endpoint is bound to the unspecified address: its port is what matches.
    assert_eq!(
        s.remote_addr().map(|a| a.port()),
        c.local_addr().map(|a| a.port())
    );
    assert_eq!(s.local_addr(), listener.local_addr().ok());
    let request = s.upgrade_request().expect("the CONNECT request");
    assert_eq!(request.path(), "/qtalk");
    assert_eq!(request.query(), Some("token=abc"));
    assert_eq!(c.tls().unwrap().server_name(), Some("localhost"));
}
