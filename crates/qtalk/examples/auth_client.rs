//! A client of `auth_server`: one call without the token (refused), one with it.
//!
//! `cargo run -p qtalk --example auth_client [ADDR]` (default 127.0.0.1:9999) prints:
//!
//! ```text
//! without the token: remote: unauthenticated: no token in metadata "authorization"
//! with the token: HELLO
//! ```

use qtalk::codec::Json;
use qtalk::rpc::Caller;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    let session = qtalk::mux::transport::connect_tcp(addr, Default::default()).await?;
    let caller = Caller::new(session, Json);

    match caller.call::<_, String>("Upper", &["hello"]).await {
        Ok(s) => println!("without the token: {s} (not refused!)"),
        Err(e) => println!("without the token: {e}"),
    }

    // Every call of this handle carries the token (a typed client built on it, too).
    let authorized = caller.clone().with_metadata("authorization", "secret");
    let upper: String = authorized.call("Upper", &["hello"]).await?;
    println!("with the token: {upper}");

    caller.session().close();
    Ok(())
}
