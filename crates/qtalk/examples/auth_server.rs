//! The classic `Upper`/`Error` service behind the authentication layer: every call must carry
//! the token `secret` in metadata key `authorization` (as is, or as `Bearer secret`); others
//! are refused with `unauthenticated: ...` before any handler runs.
//!
//! `cargo run -p qtalk --example auth_server [ADDR]` (default 127.0.0.1:9999; port 0 picks a
//! free one). Prints `listening on <addr>` once ready. Then:
//!
//! ```text
//! qtalk call --meta authorization=secret tcp://127.0.0.1:9999/Upper hello   # "HELLO"
//! qtalk call tcp://127.0.0.1:9999/Upper hello    # remote: unauthenticated: ..., exit 1
//! ```
//!
//! or `auth_client`, which makes both calls from Rust.

use qtalk::codec::Json;
use qtalk::rpc::layer::{AuthLayer, Layer};
use qtalk::rpc::{func, Call, HandlerService, RespondMux, Server, ServiceHandler};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());

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
    // The layer sees every call first: the handler runs only for callers it accepts.
    let auth = AuthLayer::bearer_token("authorization", ["secret"]);
    let service = auth.layer(HandlerService::new(mux));

    let listener = qtalk::mux::Listener::bind_tcp(addr, Default::default()).await?;
    println!("listening on {}", listener.local_addr()?);
    Server::new(ServiceHandler::new(service), Json)
        .serve(listener)
        .await?;
    Ok(())
}
