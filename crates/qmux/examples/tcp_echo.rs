//! A qmux echo server and a client in one process over TCP loopback: the client opens three
//! channels at once, sends a line on each, half-closes, and prints what comes back.
//!
//! `cargo run -p qmux --example tcp_echo`

use qtalk_mux::{Config, Listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind_tcp("127.0.0.1:0", Config::default()).await?;
    let addr = listener.local_addr()?;
    println!("echo server listening on {addr}");

    tokio::spawn(async move {
        while let Ok(session) = listener.accept().await {
            tokio::spawn(async move {
                while let Some(ch) = session.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = ch.into_split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    });
                }
            });
        }
    });

    let session = qtalk_mux::transport::connect_tcp(addr, Config::default()).await?;
    let mut calls = Vec::new();
    for i in 0..3 {
        let session = session.clone();
        calls.push(tokio::spawn(async move {
            let mut ch = session.open().await?;
            ch.write_all(format!("hello from channel {}", ch.id()).as_bytes())
                .await?;
            ch.close_write()?;
            let mut reply = String::new();
            ch.read_to_string(&mut reply).await?;
            Ok::<_, std::io::Error>((i, reply))
        }));
    }
    for call in calls {
        let (i, reply) = call.await??;
        println!("channel {i} echoed: {reply}");
    }
    session.close();
    println!("session ended: {}", session.wait().await);
    Ok(())
}
