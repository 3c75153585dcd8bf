//! Two nodes and a rendezvous on loopback: no NAT, so punching succeeds at once; the relay
//! is forced by configuration.

use std::time::Duration;

use qtalk_p2p::{
    Error, Node, NodeConfig, P2pSession, Path, PeerIdentity, Rendezvous, RendezvousConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Lab {
    rdv: Rendezvous,
    certs: Vec<qtalk_mux::tls::rustls::pki_types::CertificateDer<'static>>,
}

impl Lab {
    async fn new() -> Lab {
        let id = qtalk_mux::tls::self_signed(&["localhost"]).unwrap();
        let rdv = Rendezvous::bind(
            "127.0.0.1:0".parse().unwrap(),
            id.certs.clone(),
            id.key,
            RendezvousConfig::default(),
        )
        .await
        .unwrap();
        Lab {
            rdv,
            certs: id.certs,
        }
    }

    async fn node(&self, config: NodeConfig) -> Node {
        let tls = qtalk_mux::tls::client_config(self.certs.clone()).unwrap();
        let addr = self.rdv.local_addr().unwrap();
        Node::connect(
            addr,
            "localhost",
            tls,
            PeerIdentity::generate().unwrap(),
            config,
        )
        .await
        .unwrap()
    }
}

/// Sends `len` bytes on a fresh channel of `a`; `b`'s side echoes them back.
async fn echo(a: &P2pSession, b: &P2pSession, len: usize) {
    let server = b.session().clone();
    let echoer = tokio::spawn(async move {
        let mut ch = server.accept().await.unwrap();
        let mut data = Vec::new();
        ch.read_to_end(&mut data).await.unwrap();
        ch.write_all(&data).await.unwrap();
        ch.close_write().unwrap();
        // Hold the channel until the other side has read everything.
        let mut rest = Vec::new();
        let _ = ch.read_to_end(&mut rest).await;
    });
    let mut ch = a.session().open().await.unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    ch.write_all(&data).await.unwrap();
    ch.close_write().unwrap();
    let mut back = Vec::new();
    ch.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
    drop(ch);
    echoer.await.unwrap();
}

async fn pair(a: &Node, b: &Node, name: &str) -> (P2pSession, P2pSession) {
    let (to_b, from_a) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(a.connect_to(name), b.accept())
    })
    .await
    .expect("no session within 20 s");
    (to_b.unwrap(), from_a.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_on_loopback() {
    let lab = Lab::new().await;
    let b = lab.node(NodeConfig::default()).await;
    b.register("b").await.unwrap();
    let a = lab.node(NodeConfig::default()).await;
    let (to_b, from_a) = pair(&a, &b, "b").await;
    assert_eq!(to_b.path(), Path::Direct);
    assert_eq!(from_a.path(), Path::Direct);
    assert_eq!(to_b.peer_fingerprint(), b.fingerprint());
    assert_eq!(to_b.peer_name(), "b");
    assert_eq!(from_a.peer_fingerprint(), a.fingerprint());
    assert_eq!(
        to_b.remote_addr().map(|r| r.port()),
        Some(b.local_addr().unwrap().port())
    );
    echo(&to_b, &from_a, 1 << 20).await;
    echo(&from_a, &to_b, 1000).await;
    let stats = lab.rdv.stats();
    assert_eq!(stats.relays, 0);
    assert_eq!(stats.relayed_bytes, 0);
    assert_eq!(stats.connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_when_punching_is_off() {
    let lab = Lab::new().await;
    let mut config = NodeConfig::default();
    config.relay_after = Duration::ZERO;
    let b = lab.node(config.clone()).await;
    b.register("b").await.unwrap();
    let a = lab.node(config).await;
    let (to_b, from_a) = pair(&a, &b, "b").await;
    assert_eq!(to_b.path(), Path::Relayed);
    assert_eq!(from_a.path(), Path::Relayed);
    assert_eq!(to_b.peer_fingerprint(), b.fingerprint());
    assert_eq!(from_a.peer_fingerprint(), a.fingerprint());
    echo(&to_b, &from_a, 1 << 20).await;
    echo(&from_a, &to_b, 1000).await;
    let stats = lab.rdv.stats();
    assert_eq!(stats.relays, 1);
    // Both copies of the megabyte went through, inside TLS.
    assert!(stats.relayed_bytes > 2 << 20, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_first_come_and_released() {
    let lab = Lab::new().await;
    let b = lab.node(NodeConfig::default()).await;
    b.register("b").await.unwrap();
    let c = lab.node(NodeConfig::default()).await;
    match c.register("b").await {
        Err(Error::NameTaken(name)) => assert_eq!(name, "b"),
        other => panic!("expected NameTaken, got {other:?}"),
    }
    match c.connect_to("nobody").await {
        Err(Error::UnknownName(name)) => assert_eq!(name, "nobody"),
        other => panic!("expected UnknownName, got {other:?}"),
    }
    assert!(matches!(
        c.register("not a name").await,
        Err(Error::Refused(_))
    ));
    // B leaves: the name is free once the rendezvous saw its session end.
    b.close();
    let freed = async {
        while lab.rdv.stats().names != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), freed)
        .await
        .expect("name not released within 10 s");
    c.register("b").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_gone_session_stays() {
    let lab = Lab::new().await;
    let b = lab.node(NodeConfig::default()).await;
    b.register("b").await.unwrap();
    let a = lab.node(NodeConfig::default()).await;
    let (to_b, from_a) = pair(&a, &b, "b").await;
    assert_eq!(to_b.path(), Path::Direct);
    drop(lab);
    tokio::time::timeout(Duration::from_secs(10), a.rendezvous().wait())
        .await
        .expect("the rendezvous session did not end");
    echo(&to_b, &from_a, 1 << 16).await;
    assert!(!to_b.session().is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_without_a_certificate_but_nothing_else() {
    let lab = Lab::new().await;
    let tls = qtalk_mux::tls::client_config(lab.certs.clone()).unwrap();
    let addr = lab.rdv.local_addr().unwrap();
    let session = qtalk_mux::quic::connect(addr, "localhost", tls, Default::default())
        .await
        .unwrap();
    let caller = qtalk::rpc::Caller::new(session, qtalk::codec::Json);
    let stats: qtalk_p2p::Stats = caller.call(qtalk_p2p::wire::STATS, &()).await.unwrap();
    assert_eq!(stats.sessions, 1);
    let reg = qtalk_p2p::wire::Register {
        name: "b".into(),
        fingerprint: PeerIdentity::generate().unwrap().fingerprint(),
        local_addrs: vec![],
    };
    let err = caller
        .call::<_, qtalk::Value>(qtalk_p2p::wire::REGISTER, &[reg])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_reach_a_node_directly() {
    let lab = Lab::new().await;
    let b = lab.node(NodeConfig::default()).await;
    b.register("b").await.unwrap();
    // Straight at B's socket, without an introduction: no client certificate, then one the
    // rendezvous never vouched for. Either the handshake fails or B closes the connection at
    // once; no channel ever opens.
    let port = b.local_addr().unwrap().port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let with_cert = {
        let id = qtalk_mux::tls::self_signed(&["stranger"]).unwrap();
        let mut tls = qtalk_mux::tls::insecure_client_config();
        let key = CertifiedKey::from_der(id.certs, id.key, tls.crypto_provider()).unwrap();
        tls.client_auth_cert_resolver = Arc::new(OneCert(Arc::new(key)));
        tls
    };
    for tls in [qtalk_mux::tls::insecure_client_config(), with_cert] {
        let attempt = async {
            let session =
                qtalk_mux::quic::connect(addr, "qtalk-p2p", tls, Default::default()).await?;
            let mut ch = session.open().await?;
            ch.write_all(b"hello").await?;
            let mut buf = [0u8; 1];
            let n = ch.read(&mut buf).await?;
            Ok::<usize, Box<dyn std::error::Error + Send + Sync>>(n)
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(n)) => panic!("a stranger got a working channel ({n} bytes read)"),
            Ok(Err(e)) => {
                // Refused by B, not failed here.
                let text = e.to_string();
                assert!(
                    text.contains("certificate") || text.contains("connection lost"),
                    "{text}"
                );
            }
            Err(_) => panic!("neither refused nor answered within 10 s"),
        }
    }
}

use qtalk_mux::tls::rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Presents one certificate.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl qtalk_mux::tls::rustls::client::ResolvesClientCert for OneCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[qtalk_mux::tls::rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Over a P2P session, direct or relayed, a handler reads from its call's connection what
/// the rendezvous vouched for about its caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_reads_the_vouched_fingerprint() {
    use qtalk::rpc::{func, Call, Caller, RespondMux, Server};
    use qtalk_p2p::VouchedPeer;
    for relay in [false, true] {
        let lab = Lab::new().await;
        let mut config = NodeConfig::default();
        if relay {
            config.relay_after = Duration::ZERO;
        }
        let b = lab.node(config.clone()).await;
        b.register("b").await.unwrap();
        let a = lab.node(config).await;
        a.register("a").await.unwrap();
        let (to_b, from_a) = pair(&a, &b, "b").await;
        let mux = RespondMux::new();
        mux.handle(
            "Who",
            func(|call: Call, (): ()| async move {
                let peer = call
                    .connection()
                    .extensions()
                    .get::<VouchedPeer>()
                    .cloned()
                    .ok_or("no vouched peer")?;
                Ok::<_, String>((peer.name().to_string(), peer.fingerprint().to_string()))
            }),
        )
        .unwrap();
        let server = Server::new(mux, qtalk::codec::Json);
        server.respond(from_a.into_session());
        let caller = Caller::new(to_b.session().clone(), qtalk::codec::Json);
        let (name, fingerprint): (String, String) = caller.call("Who", &()).await.unwrap();
        assert_eq!(name, "a", "relayed: {relay}");
        assert_eq!(fingerprint, a.fingerprint().to_string(), "relayed: {relay}");
        // The caller's side knows who it reached, too.
        let mine = to_b.session().connection_info();
        let peer = mine.extensions().get::<VouchedPeer>().unwrap();
        assert_eq!(peer.fingerprint(), b.fingerprint());
        let want = if relay { Path::Relayed } else { Path::Direct };
        assert_eq!(peer.path(), want);
        server.close();
    }
}
