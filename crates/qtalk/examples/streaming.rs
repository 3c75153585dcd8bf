//! Streaming calls in one process: a server-streaming `count` (the handler continues and sends
//! values), a client-streaming `sum` (the caller sends values, then EOF), and a bidirectional
//! `chat` that answers each value as it arrives.
//!
//! `cargo run -p qtalk --example streaming`

use qtalk::codec::Json;
use qtalk::rpc::{handler_fn, Call, Peer, Responder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Peer::new(qtalk::mux::Session::new(a, Default::default()), Json);
    let server = Peer::new(qtalk::mux::Session::new(b, Default::default()), Json);

    server.handle(
        "count",
        handler_fn(|r: Responder, mut call: Call| async move {
            let n: u32 = call.receive().await.unwrap_or(0);
            let Ok(mut out) = r.continue_with(&()).await else {
                return;
            };
            for i in 1..=n {
                let _ = out.send(&i).await;
            }
            let _ = out.close_write();
        }),
    )?;
    server.handle(
        "sum",
        handler_fn(|r: Responder, mut call: Call| async move {
            let _args: Option<()> = call.receive().await.unwrap_or(None);
            let mut total = 0i64;
            while let Ok(Some(v)) = call.receive_next::<i64>().await {
                total += v;
            }
            let _ = r.ret(&total).await;
        }),
    )?;
    server.handle(
        "chat",
        handler_fn(|r: Responder, mut call: Call| async move {
            let _args: Option<()> = call.receive().await.unwrap_or(None);
            let Ok(mut out) = r.continue_with(&()).await else {
                return;
            };
            while let Ok(Some(line)) = call.receive_next::<String>().await {
                let _ = out.send(&format!("you said: {line}")).await;
            }
            let _ = out.close_write();
        }),
    )?;
    server.respond();

    let caller = client.caller();

    let mut resp = caller.call_raw("count", &3).await?;
    let _first: Option<()> = resp.receive().await?;
    while let Some(i) = resp.receive_next::<u32>().await? {
        println!("count: {i}");
    }

    let mut req = caller.request("sum").await?;
    req.send(&()).await?;
    for v in [1, 2, 3, 4] {
        req.send(&v).await?;
    }
    req.close_write()?;
    let total: i64 = req.response().await?.receive().await?;
    println!("sum: {total}");

    let mut chat = caller.call_raw("chat", &()).await?;
    let _first: Option<()> = chat.receive().await?;
    for line in ["hi", "bye"] {
        chat.send(&line).await?;
        let answer: String = chat.receive().await?;
        println!("{answer}");
    }
    chat.close_write()?;
    client.close();
    Ok(())
}
