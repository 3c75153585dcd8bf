//! A typed service: `#[qtalk::service]` on a trait gives a server (`into_mux`) and a client
//! (`TextClient`), here over TCP in one process. The selectors are `Upper` and `Error`, the
//! method names in Go's exported style, so a Go struct served with `fn.HandlerFrom` answers the
//! same client.
//!
//! `cargo run -p qtalk --example typed_service`

use qtalk::codec::Json;
use qtalk::rpc::{Caller, Server};

#[qtalk::service]
pub trait Text {
    /// Upper-cases a text (selector `Upper`).
    async fn upper(&self, text: String) -> String;
    /// Fails with the text (selector `Error`).
    async fn error(&self, text: String) -> Result<(), String>;
}

struct MyText;

impl Text for MyText {
    async fn upper(&self, text: String) -> String {
        text.to_uppercase()
    }

    async fn error(&self, text: String) -> Result<(), String> {
        Err(text)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default()).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { Server::new(MyText.into_mux(), Json).serve(listener).await });

    let session = qtalk::mux::transport::connect_tcp(addr, Default::default()).await?;
    let text = TextClient::new(Caller::new(session, Json));
    println!("{}", text.upper("hello world".into()).await?);
    if let Err(err) = text.error("user error".into()).await {
        println!("{err}");
    }
    Ok(())
}
