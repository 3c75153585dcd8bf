//! tarpc with its JSON serde transport over TCP (length-delimited frames): the same echo.

use std::time::Duration;

use futures::prelude::*;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Json;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tarpc::{client, context};
use tokio::net::{TcpListener, TcpStream};

use crate::stats::{calls_report, drive, Report};

#[tarpc::service]
pub trait Echo {
    async fn echo(s: String) -> String;
}

#[derive(Clone)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, s: String) -> String {
        s
    }
}

/// Accepts connections and serves each one's requests concurrently (a task per request, as
/// tarpc's examples do). Nagle is off on both sides, as qmux's TCP transport does.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let transport = tarpc::serde_transport::new(
            Framed::new(stream, LengthDelimitedCodec::new()),
            Json::default(),
        );
        tokio::spawn(
            BaseChannel::with_defaults(transport)
                .execute(EchoServer.serve())
                .for_each(|response| async move {
                    tokio::spawn(response);
                }),
        );
    }
}

/// `callers` tasks calling `echo("hello")` on one client (one connection) for `secs`.
pub async fn calls(
    system: &str,
    addr: &str,
    callers: usize,
    secs: Duration,
    warmup: Duration,
) -> std::io::Result<Report> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let transport = tarpc::serde_transport::new(
        Framed::new(stream, LengthDelimitedCodec::new()),
        Json::default(),
    );
    let client = EchoClient::new(client::Config::default(), transport).spawn();
    let op = move |_| {
        let client = client.clone();
        async move {
            match client.echo(context::current(), "hello".to_string()).await {
                Ok(s) => s == "hello",
                Err(e) => {
                    eprintln!("tarpc echo failed: {e}");
                    false
                }
            }
        }
    };
    drive(callers, warmup, op.clone()).await;
    let (elapsed, lat) = drive(callers, secs, op).await;
    Ok(calls_report(system, "calls", callers, elapsed, lat))
}
