//! `qtalk interop --p2p NAME` and `qtalk rendezvous`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use qtalk::codec::Codec;
use qtalk_cli::peer;
use qtalk_cli::url::Endpoint;
use qtalk_cli::Failure;

use super::args::RendezvousArgs;
use super::parse_url;
use super::serve::{interop_server, shutdown_signal, SHUTDOWN_GRACE};

/// `qtalk interop --p2p NAME --via quic://RDV`: registers NAME and serves the interop service
/// to every peer that reaches it, until a signal comes.
pub(crate) async fn serve_p2p(
    name: &str,
    via: &str,
    dial: &peer::Dial,
    codec: Arc<dyn Codec>,
) -> Result<(), Failure> {
    let node = qtalk_cli::p2p::node(via, dial).await?;
    let public = node
        .register(name)
        .await
        .map_err(|e| Failure::Transport(format!("cannot register {name:?} on {via}: {e}")))?;
    eprintln!(
        "registered {}{name} on {via} (public address {public}, fingerprint {})",
        qtalk_cli::p2p::SCHEME,
        node.fingerprint()
    );
    let server = interop_server(codec, Arc::new(AtomicBool::new(false)));
    let serve = async {
        while let Some(incoming) = node.accept().await {
            eprintln!(
                "path: {} (peer {}{})",
                incoming.path(),
                incoming.peer_fingerprint(),
                incoming
                    .remote_addr()
                    .map(|a| format!(" at {a}"))
                    .unwrap_or_default()
            );
            server.respond(incoming.into_session());
        }
    };
    tokio::select! {
        _ = serve => Ok(()),
        _ = node.rendezvous().wait() => {
            // Sessions already made go on without the rendezvous; new peers cannot reach
            // this one any more.
            eprintln!("the rendezvous session ended; serving the peers connected so far");
            shutdown_signal().await;
            Ok(())
        }
        _ = shutdown_signal() => {
            server.shutdown(SHUTDOWN_GRACE).await;
            Ok(())
        }
    }
}

/// `qtalk rendezvous --listen quic://ADDR`.
pub(crate) async fn rendezvous_cmd(a: RendezvousArgs) -> Result<(), Failure> {
    let target = parse_url(&a.listen)?;
    let Endpoint::Quic(addr) = &target.endpoint else {
        return Err(Failure::Usage(format!(
            "--listen takes quic://HOST:PORT, not {}",
            target.endpoint
        )));
    };
    let bind = tokio::net::lookup_host(addr.as_str())
        .await
        .map_err(|e| Failure::Usage(format!("cannot resolve {addr}: {}", peer::describe_io(&e))))?
        .next()
        .ok_or_else(|| Failure::Usage(format!("{addr} resolved to nothing")))?;
    let tls_failure = |e: std::io::Error| Failure::Usage(format!("cannot set up TLS: {e}"));
    let (certs, key, generated) = match (a.cert, a.key) {
        (Some(cert), Some(key)) => (
            qtalk_mux::tls::load_certs(cert).map_err(tls_failure)?,
            qtalk_mux::tls::load_key(key).map_err(tls_failure)?,
            false,
        ),
        _ => {
            let host = peer::host_of(addr);
            let mut names = vec!["localhost", "127.0.0.1", "::1"];
            if !names.contains(&host) && !host.is_empty() {
                names.push(host);
            }
            let id = qtalk_mux::tls::self_signed(&names).map_err(tls_failure)?;
            (id.certs, id.key, true)
        }
    };
    let config = qtalk_p2p::RendezvousConfig::default();
    let rdv = qtalk_p2p::Rendezvous::bind(bind, certs, key, config)
        .await
        .map_err(|e| Failure::Transport(format!("cannot listen on {}: {e}", target.endpoint)))?;
    let local = rdv
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.clone());
    eprintln!("listening on quic://{local}");
    if generated {
        eprintln!(
            "note: serving a self-signed certificate; peers need --insecure, or --cert/--key \
             here and --ca there"
        );
    }
    shutdown_signal().await;
    drop(rdv);
    Ok(())
}
