//! Calls the `upper_server` example: prints `HELLO WORLD`, then the remote error
//! `remote: user error [/Error]`.
//!
//! `cargo run -p qtalk --example upper_client [ADDR]` (default 127.0.0.1:9999).

use qtalk::codec::Json;
use qtalk::rpc::Caller;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default()).await?;
    let caller = Caller::new(session, Json);

    let reply: String = caller.call("Upper", &["hello world"]).await?;
    println!("{reply}");

    if let Err(err) = caller.call::<_, ()>("Error", &["user error"]).await {
        println!("{err}");
    }
    caller.session().close();
    Ok(())
}
