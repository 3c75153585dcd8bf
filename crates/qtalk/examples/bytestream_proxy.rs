//! A call that turns into a byte stream: the `dial` handler connects to a TCP address and then
//! pipes raw bytes between the call's channel and that connection, so a client can reach a
//! TCP service through the qtalk session (a tunnel).
//!
//! `cargo run -p qtalk --example bytestream_proxy` starts a TCP echo service, the proxy, and a
//! client that talks to the echo service through it.

use qtalk::codec::Json;
use qtalk::rpc::{handler_fn, Call, Peer, Responder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A plain TCP echo service to tunnel to.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_addr = echo.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });

    // The proxy: `dial(addr)` continues into a raw stream connected to `addr`.
    let (a, b) = tokio::io::duplex(256 * 1024);
    let proxy = Peer::new(qtalk::mux::Session::new(b, Default::default()), Json);
    proxy.handle(
        "dial",
        handler_fn(|r: Responder, mut call: Call| async move {
            let addr: String = match call.receive().await {
                Ok(a) => a,
                Err(e) => return drop(r.error(e).await),
            };
            let mut conn = match tokio::net::TcpStream::connect(&addr).await {
                Ok(c) => c,
                Err(e) => return drop(r.error(format!("dial {addr}: {e}")).await),
            };
            let Ok(mut out) = r.continue_with(&()).await else {
                return;
            };
            let (mut cr, mut cw) = conn.split();
            let up = async {
                let _ = tokio::io::copy(&mut call, &mut cw).await;
                let _ = cw.shutdown().await;
            };
            let down = async {
                let _ = tokio::io::copy(&mut cr, &mut out).await;
                let _ = out.shutdown().await;
            };
            tokio::join!(up, down);
        }),
    )?;
    proxy.respond();

    // The client: dial through the proxy and talk to the echo service.
    let client = Peer::new(qtalk::mux::Session::new(a, Default::default()), Json);
    let mut tunnel = client
        .caller()
        .call_raw("dial", &echo_addr.to_string())
        .await?;
    let _ack: Option<()> = tunnel.receive().await?;
    tunnel.write_all(b"hello through the tunnel").await?;
    tunnel.close_write()?;
    let mut back = String::new();
    tunnel.read_to_string(&mut back).await?;
    println!("echoed: {back}");
    client.close();
    Ok(())
}
