//! A service as README's "Securing a service" sets one up: TLS for the network with a token
//! in metadata, a Unix socket for this user's local processes, the handler told who called,
//! and a graceful shutdown on Ctrl-C.
//!
//! `cargo run -p qtalk --features tls --example secure_server -- cert.pem key.pem` (with
//! `API_TOKEN` set); then
//! `qtalk call --ca cert.pem --meta authorization=$API_TOKEN tls://localhost:9443/Upper hi`.

use std::os::unix::fs::MetadataExt;

use qtalk::codec::Json;
use qtalk::mux::{tls, Listener};
use qtalk::rpc::layer::{AuthLayer, Layer, Principal};
use qtalk::rpc::{func, Call, HandlerService, RespondMux, Server, ServiceHandler};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cert, key] = &args[..] else {
        return Err("usage: secure_server CERT.pem KEY.pem (and API_TOKEN set)".into());
    };
    let (cert, key) = (cert.as_str(), key.as_str());
    // -- the code of README's "Securing a service" --
    let mux = RespondMux::new();
    mux.handle(
        "Upper",
        func(|call: Call, (s,): (String,)| async move {
            let who = call.extensions().get::<Principal>().cloned();
            println!("{who:?} from {:?}", call.connection().remote_addr());
            Ok::<_, String>(s.to_uppercase())
        }),
    )?;
    let tls = tls::server_config(tls::load_certs(cert)?, tls::load_key(key)?)?;
    let network = Listener::bind_tls("0.0.0.0:9443", tls, Default::default()).await?;
    let local = Listener::bind_unix("/tmp/upper.sock", Default::default())?;
    // A token in metadata from anywhere; on the socket, its owner (this user).
    let me = std::fs::metadata("/tmp/upper.sock")?.uid();
    let token = std::env::var("API_TOKEN")?;
    let auth = AuthLayer::bearer_token("authorization", [token]).or_unix_uid([me]);
    let handler = ServiceHandler::new(auth.layer(HandlerService::new(mux)));
    let server = Server::new(handler, Json);
    let (a, b) = (server.clone(), server.clone());
    tokio::spawn(async move { a.serve(network).await });
    tokio::spawn(async move { b.serve(local).await });
    tokio::signal::ctrl_c().await?;
    // New calls are refused ("unavailable: shutting down"); running ones get 5 s.
    server.shutdown(std::time::Duration::from_secs(5)).await;
    // -- end --
    Ok(())
}
