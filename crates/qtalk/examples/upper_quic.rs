//! The Upper/Error service with QUIC as the base layer: server and client in one process, the
//! server presenting a fresh self-signed certificate that the client trusts explicitly.
//!
//! `cargo run -p qtalk --features quic --example upper_quic`

use qtalk::codec::Json;
use qtalk::rpc::{func, Call, Caller, RespondMux, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mux = RespondMux::new();
    mux.handle(
        "Upper",
        func(|_call: Call, (text,): (String,)| async move { Ok::<_, String>(text.to_uppercase()) }),
    )?;
    mux.handle(
        "Error",
        func(|call: Call, (text,): (String,)| async move {
            Err::<(), _>(format!("{text} [{}]", call.selector()))
        }),
    )?;

    // For a real server: qtalk::mux::tls::load_certs("cert.pem") and load_key("key.pem").
    let identity = qtalk::mux::tls::self_signed(&["localhost"])?;
    let server_tls = qtalk::mux::tls::server_config(identity.certs.clone(), identity.key)?;
    let listener =
        qtalk::mux::Listener::bind_quic("127.0.0.1:0", server_tls, Default::default()).await?;
    let addr = listener.local_addr()?;
    let server = Server::new(mux, Json);
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(listener).await }
    });

    // For public servers: qtalk::mux::tls::platform_client_config().
    let client_tls = qtalk::mux::tls::client_config(identity.certs)?;
    let session =
        qtalk::mux::quic::connect(addr, "localhost", client_tls, Default::default()).await?;
    let caller = Caller::new(session.clone(), Json);
    let reply: String = caller.call("Upper", &["hello world"]).await?;
    println!("{reply}");
    if let Err(err) = caller.call::<_, ()>("Error", &["user error"]).await {
        println!("{err}");
    }
    session.close();
    Ok(())
}
