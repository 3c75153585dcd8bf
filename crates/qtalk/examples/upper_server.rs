//! The classic qtalk example service: `Upper(string) -> string` and `Error(string) -> error`.
//!
//! `cargo run -p qtalk --example upper_server [ADDR]` (default 127.0.0.1:9999; port 0 picks a
//! free one). Prints `listening on <addr>` once ready. Try it with `upper_client` or the `qtalk`
//! CLI: `qtalk call tcp://127.0.0.1:9999/Upper hello` (prints `"HELLO"`; `qtalk call` sends its
//! arguments as the parameter array, here `["hello"]`, which is what `func` takes).

use qtalk::codec::Json;
use qtalk::rpc::{func, Call, RespondMux, Server};

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

    let listener = qtalk::mux::Listener::bind_tcp(addr, Default::default()).await?;
    println!("listening on {}", listener.local_addr()?);
    Server::new(mux, Json).serve(listener).await?;
    Ok(())
}
