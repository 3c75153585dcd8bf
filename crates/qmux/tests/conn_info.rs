//! What each transport tells a session of its connection (`Session::connection_info`), over
//! real sockets: addresses over TCP, peer credentials over Unix sockets, the client's
//! certificate over mutual TLS (and the refusal of a client without one), the WebSocket
//! upgrade request with its cookie, and a child process's id.

mod common;

use common::{tcp_pair, unix_pair, within};
use qtalk_mux::{Config, Listener, TransportKind};

#[tokio::test]
async fn tcp_addresses_on_both_sides() {
    let (client, server) = tcp_pair(Config::default()).await;
    let (c, s) = (client.connection_info(), server.connection_info());
    assert_eq!(c.transport(), TransportKind::Tcp);
    assert_eq!(s.transport(), TransportKind::Tcp);
    let (c_local, c_remote) = (c.local_addr().unwrap(), c.remote_addr().unwrap());
    assert_eq!(s.remote_addr(), Some(c_local));
    assert_eq!(s.local_addr(), Some(c_remote));
    assert!(c_local.ip().is_loopback());
    assert!(!c.is_secure() && c.tls().is_none() && c.upgrade_request().is_none());
    // Clones of the handle share it.
    assert_eq!(
        server.clone().connection_info().remote_addr(),
        Some(c_local)
    );
}

#[cfg(unix)]
#[tokio::test]
async fn unix_peer_credentials() {
    use std::os::unix::fs::MetadataExt;
    // Our own uid and gid, as the kernel stamps the files we create.
    let probe = std::env::temp_dir().join(format!("qmux-uid-{}", std::process::id()));
    std::fs::write(&probe, b"").unwrap();
    let meta = std::fs::metadata(&probe).unwrap();
    let _ = std::fs::remove_file(&probe);

    let (client, server) = unix_pair(Config::default()).await;
    for session in [&client, &server] {
        let info = session.connection_info();
        assert_eq!(info.transport(), TransportKind::Unix);
        let creds = info.peer_credentials().expect("credentials of a Unix peer");
        assert_eq!(creds.uid(), Some(meta.uid()));
        assert_eq!(creds.gid(), Some(meta.gid()));
        // Both ends are this process.
        assert_eq!(creds.pid(), Some(std::process::id()));
    }
}

#[tokio::test]
async fn child_process_id() {
    let (session, child) = qtalk_mux::transport::spawn("cat", Config::default()).unwrap();
    let info = session.connection_info();
    assert_eq!(info.transport(), TransportKind::Child);
    assert_eq!(info.peer_credentials().unwrap().pid(), child.id());
    assert!(child.id().is_some());
}

#[cfg(feature = "websocket")]
#[tokio::test]
async fn websocket_upgrade_request_with_a_cookie() {
    use qtalk_mux::transport::ws::tokio_tungstenite;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let listener = Listener::bind_ws("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    // As a browser sends it: a path and query of the page's choosing, its cookies.
    let mut request = format!("ws://{addr}/rpc?room=7")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", "theme=dark; session=s3cr3t".parse().unwrap());
    headers.insert("origin", format!("http://{addr}").parse().unwrap());
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        (
            qtalk_mux::transport::over_websocket(ws, Config::default()),
            local,
        )
    };
    let ((client, client_addr), server) = within(10, "upgrade", async {
        tokio::join!(connect, listener.accept())
    })
    .await;
    let server = server.unwrap();
    let info = server.connection_info();
    assert_eq!(info.transport(), TransportKind::WebSocket);
    assert_eq!(info.remote_addr(), Some(client_addr));
    assert_eq!(info.local_addr(), Some(addr));
    let upgrade = info.upgrade_request().expect("the upgrade request");
    assert_eq!(upgrade.path(), "/rpc");
    assert_eq!(upgrade.query(), Some("room=7"));
    assert_eq!(upgrade.cookie("session"), Some("s3cr3t"));
    assert_eq!(upgrade.cookie("theme"), Some("dark"));
    assert_eq!(
        upgrade.header("Origin").unwrap(),
        format!("http://{addr}").as_str()
    );
    assert!(!info.is_secure());
    assert_eq!(
        client.connection_info().transport(),
        TransportKind::WebSocket
    );
}

#[cfg(feature = "tls")]
mod mutual_tls {
    use super::*;
    use qtalk_mux::tls;

    /// A server requiring client certificates issued by (here: equal to) `client`'s, and
    /// settings for clients trusting the server.
    fn server_and_trust(
        client: &tls::Identity,
    ) -> (tls::rustls::ServerConfig, tls::rustls::ClientConfig) {
        let server = tls::self_signed(&["localhost"]).unwrap();
        let server_tls = tls::server_config_with_client_auth(
            server.certs.clone(),
            server.key,
            client.certs.clone(),
        )
        .unwrap();
        (server_tls, tls::client_config(server.certs).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_certificate_over_tls() {
        let id = tls::self_signed(&["client-1"]).unwrap();
        let (server_tls, trust) = server_and_trust(&id);
        let listener = Listener::bind_tls("127.0.0.1:0", server_tls, Config::default())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // Every session the listener hands out.
        let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(s) = listener.accept().await {
                let _ = tx.send(s);
            }
        });

        // Without a certificate, or with one the server does not trust, the handshake
        // fails. (In TLS 1.3 the client may finish before the server's refusal arrives:
        // its session then ends at once.)
        let other = tls::self_signed(&["client-2"]).unwrap();
        let stranger = tls::with_client_certificate(trust.clone(), other.certs, other.key).unwrap();
        for (what, settings) in [("no certificate", trust.clone()), ("untrusted", stranger)] {
            let connect =
                qtalk_mux::transport::connect_tls(addr, "localhost", settings, Config::default());
            within(10, what, async {
                if let Ok(s) = connect.await {
                    let end = s.wait().await;
                    eprintln!("{what}: the session ended: {end}");
                }
            })
            .await;
        }

        let presenting = tls::with_client_certificate(trust, id.certs.clone(), id.key).unwrap();
        let client = within(
            10,
            "mutual TLS",
            qtalk_mux::transport::connect_tls(addr, "localhost", presenting, Config::default()),
        )
        .await
        .unwrap();
        // The first session handed out is this client's: the refused ones never were.
        let server = within(10, "accepted", accepted.recv()).await.unwrap();
        let info = server.connection_info();
        assert_eq!(info.transport(), TransportKind::Tls);
        assert!(info.is_secure());
        let tls_info = info.tls().unwrap();
        assert_eq!(
            tls_info
                .peer_certificate()
                .expect("the client's certificate")
                .as_der(),
            id.certs[0].as_ref()
        );
        assert_eq!(tls_info.server_name(), Some("localhost"));
        assert_eq!(info.remote_addr(), client.connection_info().local_addr());
        // The client sees the server's certificate.
        assert_eq!(client.connection_info().peer_certificates().len(), 1);
        assert!(accepted.try_recv().is_err());
    }

    #[cfg(feature = "websocket")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_certificate_and_upgrade_over_wss() {
        let id = tls::self_signed(&["client-1"]).unwrap();
        let (server_tls, trust) = server_and_trust(&id);
        let listener = Listener::bind_wss("127.0.0.1:0", server_tls, Config::default())
            .await
            .unwrap();
        let url = format!(
            "wss://localhost:{}/q?x=1",
            listener.local_addr().unwrap().port()
        );
        let presenting = tls::with_client_certificate(trust, id.certs.clone(), id.key).unwrap();
        let (client, server) = within(10, "wss", async {
            tokio::join!(
                qtalk_mux::transport::connect_wss(&url, presenting, Config::default()),
                listener.accept()
            )
        })
        .await;
        let (_client, server) = (client.unwrap(), server.unwrap());
        let info = server.connection_info();
        assert_eq!(info.transport(), TransportKind::WebSocket);
        assert_eq!(info.peer_certificates()[0].as_der(), id.certs[0].as_ref());
        let upgrade = info.upgrade_request().unwrap();
        assert_eq!((upgrade.path(), upgrade.query()), ("/q", Some("x=1")));
    }
}
