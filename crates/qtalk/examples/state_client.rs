//! Joins the `state_server` example under a name, prints every user list the server pushes
//! through the `state` callback, and leaves after `SECONDS` (default: stays until killed).
//!
//! `cargo run -p qtalk --example state_client NAME [ADDR] [SECONDS]`

use std::time::Duration;

use qtalk::codec::Json;
use qtalk::rpc::{func, Call, Peer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "guest".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9998".into());
    let stay: Option<u64> = args.next().and_then(|s| s.parse().ok());

    let session = qtalk::mux::transport::connect_tcp(addr, Default::default()).await?;
    let peer = Peer::new(session, Json);
    // The server calls this whenever the user list changes.
    peer.handle(
        "state",
        func(|_call: Call, (users,): (Vec<String>,)| async move {
            println!("users: {}", users.join(", "));
            Ok::<_, String>(())
        }),
    )?;
    peer.respond();

    peer.call::<_, ()>("Join", &[&name]).await?;
    match stay {
        Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
        None => std::future::pending::<()>().await,
    }
    peer.call::<_, ()>("Leave", &[&name]).await?;
    peer.close();
    Ok(())
}
