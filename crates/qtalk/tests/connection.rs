//! A handler reads who is calling from `Call::connection`, over real sockets: the remote
//! address over TCP, the peer's uid over a Unix socket, a cookie of the WebSocket upgrade,
//! and the client certificate over mutual TLS and QUIC (where a client without one is
//! refused).

use std::time::Duration;

use qtalk::codec::Json;
use qtalk::mux::{tls, Config, Listener, Session};
use qtalk::rpc::{func, Call, Caller, RespondMux, Server};
use serde::{Deserialize, Serialize};

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// What the handler found out about its caller.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Who {
    transport: String,
    remote: Option<String>,
    certificate: Option<Vec<u8>>,
    server_name: Option<String>,
    alpn: Option<String>,
    cookie: Option<String>,
    path: Option<String>,
    uid: Option<u32>,
}

fn server() -> Server {
    let mux = RespondMux::new();
    mux.handle(
        "Who",
        func(|call: Call, (): ()| async move {
            let c = call.connection();
            let tls = c.tls();
            Ok::<_, String>(Who {
                transport: c.transport().name().to_string(),
                remote: c.remote_addr().map(|a| a.to_string()),
                certificate: tls
                    .and_then(|t| t.peer_certificate())
                    .map(|cert| cert.as_der().to_vec()),
                server_name: tls.and_then(|t| t.server_name()).map(String::from),
                alpn: tls
                    .and_then(|t| t.alpn())
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
                cookie: c
                    .upgrade_request()
                    .and_then(|r| r.cookie("session"))
                    .map(String::from),
                path: c.upgrade_request().map(|r| r.path().to_string()),
                uid: c.peer_credentials().and_then(|p| p.uid()),
            })
        }),
    )
    .unwrap();
    Server::new(mux, Json)
}

fn serve(listener: Listener) -> Server {
    let s = server();
    let serving = s.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    s
}

async fn who(session: Session) -> Who {
    let caller = Caller::new(session, Json);
    within(10, "Who", caller.call("Who", &())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_address_over_tcp() {
    let listener = Listener::bind_tcp("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener);
    let session = qtalk::mux::transport::connect_tcp(addr, Config::default())
        .await
        .unwrap();
    let mine = session.connection_info().local_addr().unwrap();
    let who = who(session).await;
    assert_eq!(who.transport, "tcp");
    assert_eq!(who.remote, Some(mine.to_string()));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_uid_over_unix() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("qtalk-conn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("who.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind_unix(&path, Config::default()).unwrap();
    // The socket file is ours: its owner is this process's uid.
    let uid = std::fs::metadata(&path).unwrap().uid();
    let _server = serve(listener);
    let session = qtalk::mux::transport::connect_unix(&path, Config::default())
        .await
        .unwrap();
    let who = who(session).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(who.transport, "unix");
    assert_eq!(who.uid, Some(uid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_in_the_websocket_upgrade() {
    use qtalk::mux::transport::ws::tokio_tungstenite;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let listener = Listener::bind_ws("127.0.0.1:0", Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener);
    let mut request = format!("ws://{addr}/app").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", "session=c00k1e; theme=dark".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let who = who(qtalk::mux::transport::over_websocket(ws, Config::default())).await;
    assert_eq!(who.transport, "ws");
    assert_eq!(who.cookie.as_deref(), Some("c00k1e"));
    assert_eq!(who.path.as_deref(), Some("/app"));
    assert!(who.remote.is_some());
}

/// A server identity for localhost requiring client certificates issued by `client`'s
/// certificate (self-signed here), and client settings trusting the server.
fn mutual(client: &tls::Identity) -> (tls::rustls::ServerConfig, tls::rustls::ClientConfig) {
    let server = tls::self_signed(&["localhost"]).unwrap();
    let server_tls =
        tls::server_config_with_client_auth(server.certs.clone(), server.key, client.certs.clone())
            .unwrap();
    (server_tls, tls::client_config(server.certs).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_over_mutual_tls() {
    let id = tls::self_signed(&["client-1"]).unwrap();
    let (server_tls, trust) = mutual(&id);
    let listener = Listener::bind_tls("127.0.0.1:0", server_tls, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener);

    // Without a certificate: no session (or one that ends at once), no answer.
    let bare =
        qtalk::mux::transport::connect_tls(addr, "localhost", trust.clone(), Config::default());
    match within(10, "refused", bare).await {
        Err(e) => eprintln!("refused: {e}"),
        Ok(session) => {
            let caller = Caller::new(session, Json);
            let err = within(10, "refused call", caller.call::<_, Who>("Who", &()))
                .await
                .unwrap_err();
            assert!(err.is_session_gone(), "{err:?}");
        }
    }

    let presenting = tls::with_client_certificate(trust, id.certs.clone(), id.key).unwrap();
    let session =
        qtalk::mux::transport::connect_tls(addr, "localhost", presenting, Config::default())
            .await
            .unwrap();
    let who = who(session).await;
    assert_eq!(who.transport, "tls");
    assert_eq!(who.certificate.as_deref(), Some(id.certs[0].as_ref()));
    assert_eq!(who.server_name.as_deref(), Some("localhost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_over_quic() {
    let id = tls::self_signed(&["client-1"]).unwrap();
    let (server_tls, trust) = mutual(&id);
    let listener = Listener::bind_quic("127.0.0.1:0", server_tls, Config::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = serve(listener);

    let bare = qtalk::mux::quic::connect(addr, "localhost", trust.clone(), Config::default());
    match within(10, "refused", bare).await {
        Err(e) => eprintln!("refused: {e}"),
        Ok(session) => {
            let caller = Caller::new(session, Json);
            let err = within(10, "refused call", caller.call::<_, Who>("Who", &()))
                .await
                .unwrap_err();
            assert!(err.is_session_gone(), "{err:?}");
        }
    }

    let presenting = tls::with_client_certificate(trust, id.certs.clone(), id.key).unwrap();
    let session = qtalk::mux::quic::connect(addr, "localhost", presenting, Config::default())
        .await
        .unwrap();
    let mine = session.connection_info();
    assert_eq!(mine.tls().unwrap().alpn(), Some(&b"qtalk-quic"[..]));
    let who = who(session).await;
    assert_eq!(who.transport, "quic");
    assert_eq!(who.certificate.as_deref(), Some(id.certs[0].as_ref()));
    assert_eq!(who.server_name.as_deref(), Some("localhost"));
    assert_eq!(who.alpn.as_deref(), Some("qtalk-quic"));
    assert!(who.remote.is_some());
}
