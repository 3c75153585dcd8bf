//! A TCP proxy that authenticated services can tap: the one qtalk's announcement imagines.
//!
//! The proxy forwards every client connection to an upstream server. On its rpc port (behind
//! the authentication layer: token in metadata key `authorization`) a service registers a
//! callback with `Tap`. For every connection that comes through, the proxy calls that
//! callback with a continued call: the callback receives the connection's id and client
//! address, then a tee of the bytes the client sends. Whenever it sends back a verdict
//! (`{"cut": "<why>"}`) on that call, the proxy closes the connection.
//!
//! ```text
//! cargo run -p qtalk --example tap_proxy -- proxy 127.0.0.1:8080 UPSTREAM 127.0.0.1:9090 TOKEN
//! cargo run -p qtalk --example tap_proxy -- service 127.0.0.1:9090 TOKEN "DROP TABLE"
//! ```
//!
//! The proxy prints `clients on ADDR`, `rpc on ADDR`, then a line per tap and cut; the service
//! prints `tapping`, then a line per connection it sees and cuts. A tap is a tee, not a gate:
//! the bytes go upstream as they come, and the tap's flow control paces the connection (a
//! tap that stops reading stops it).

use std::sync::{Arc, Mutex};

use qtalk::codec::Json;
use qtalk::rpc::layer::{AuthLayer, Layer};
use qtalk::rpc::{
    func, handler_fn, Call, Callback, Caller, HandlerService, Peer, RespondMux, Responder, Server,
    ServiceHandler,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a tap callback is told of a connection first.
#[derive(Serialize, Deserialize)]
struct Tapped {
    id: u64,
    client: String,
}

/// What a tap sends back to have a connection closed.
#[derive(Serialize, Deserialize)]
struct Verdict {
    cut: String,
}

/// How long a tap has to take a new connection.
const TAP_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

/// A registered tap: the callback, and the session to call it on.
#[derive(Clone)]
struct Tap {
    caller: Caller,
    callback: Callback,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["proxy", listen, upstream, rpc, token] => proxy(listen, upstream, rpc, token).await,
        ["service", rpc, token, keyword] => service(rpc, token, keyword).await,
        _ => Err("usage: tap_proxy proxy LISTEN UPSTREAM RPC TOKEN | \
                  tap_proxy service RPC TOKEN KEYWORD"
            .into()),
    }
}

async fn proxy(
    listen: &str,
    upstream: &str,
    rpc: &str,
    token: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let taps: Arc<Mutex<Vec<Tap>>> = Arc::default();
    let mux = RespondMux::new();
    let t = taps.clone();
    mux.handle(
        "Tap",
        func(move |call: Call, (callback,): (Callback,)| {
            // The callback lives on the session that registered it.
            let tap = Tap {
                caller: call.caller().clone(),
                callback,
            };
            t.lock().unwrap().push(tap);
            println!("tap registered");
            async { Ok::<_, String>("tapping") }
        }),
    )?;
    let service = AuthLayer::bearer_token("authorization", [token]).layer(HandlerService::new(mux));
    let rpc = qtalk::mux::Listener::bind_tcp(rpc, Default::default()).await?;
    let clients = TcpListener::bind(listen).await?;
    println!("clients on {}", clients.local_addr()?);
    println!("rpc on {}", rpc.local_addr()?);
    let server = Server::new(ServiceHandler::new(service), Json);
    tokio::spawn(async move { server.serve(rpc).await });

    let mut next_id = 0u64;
    loop {
        let (client, from) = clients.accept().await?;
        next_id += 1;
        let (id, upstream, taps) = (next_id, upstream.to_string(), taps.clone());
        tokio::spawn(async move {
            let tapped = {
                let mut taps = taps.lock().unwrap();
                // A service that went away taps no more.
                taps.retain(|t| !t.caller.session().is_closed());
                taps.clone()
            };
            match relay(id, client, from, &upstream, tapped).await {
                Ok(Some(why)) => println!("cut connection {id}: {why}"),
                Ok(None) => {}
                Err(e) => println!("connection {id}: {e}"),
            }
        });
    }
}

/// Forwards one connection both ways, teeing what the client sends to every tap; returns
/// the verdict of a tap that cut it.
async fn relay(
    id: u64,
    client: TcpStream,
    from: std::net::SocketAddr,
    upstream: &str,
    taps: Vec<Tap>,
) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
    let server = TcpStream::connect(upstream).await?;
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    // Each tap: a continued call, its sending side for the tee, its receiving side for verdicts.
    let (verdict_tx, mut verdicts) = tokio::sync::mpsc::unbounded_channel();
    let mut tees = Vec::new();
    for tap in taps {
        let tapped = Tapped {
            id,
            client: from.to_string(),
        };
        // A tap that fails to answer, or is slow to, does not hold up the connection.
        let opened = tokio::time::timeout(TAP_ANSWER, open_tap(&tap, &tapped)).await;
        let Ok(Ok((mut answers, tee))) = opened else {
            println!("connection {id}: a tap did not answer");
            continue;
        };
        let verdict_tx = verdict_tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(v)) = answers.receive_next::<Verdict>().await {
                let _ = verdict_tx.send(v.cut);
            }
        });
        tees.push(tee);
    }
    drop(verdict_tx);
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            server_w.write_all(&buf[..n]).await?;
            for tee in &mut tees {
                let _ = tee
                    .write_bytes(bytes::Bytes::copy_from_slice(&buf[..n]))
                    .await;
            }
        }
        server_w.shutdown().await?;
        for tee in &tees {
            let _ = tee.close_write();
        }
        Ok::<_, std::io::Error>(())
    };
    let down = tokio::io::copy(&mut server_r, &mut client_w);
    tokio::select! {
        // Both directions done: the connection ended by itself.
        (a, b) = async { tokio::join!(up, down) } => {
            a?;
            b?;
            Ok(None)
        }
        // A tap cut it: returning drops both sockets, which closes them.
        Some(why) = verdicts.recv() => Ok(Some(why)),
    }
}

/// Calls a tap's callback for one connection; returns both sides of the continued call.
async fn open_tap(
    tap: &Tap,
    tapped: &Tapped,
) -> Result<(qtalk::rpc::ResponseReader, qtalk::rpc::ResponseWriter), qtalk::rpc::Error> {
    let mut req = tap.caller.request(&tap.callback.id).await?;
    req.send(tapped).await?;
    let (mut answers, tee) = req.response().await?.into_split();
    let () = answers.receive().await?;
    Ok((answers, tee))
}

async fn service(rpc: &str, token: &str, keyword: &str) -> Result<(), Box<dyn std::error::Error>> {
    let session = qtalk::mux::transport::connect_tcp(rpc, Default::default()).await?;
    // A peer: it calls the proxy, and answers the proxy's calls of its callback.
    let peer = Peer::new(session, Json);
    peer.respond();
    let caller = peer.caller().clone();
    let keyword = keyword.as_bytes().to_vec();
    let tap = Callback::register(
        &caller,
        handler_fn(move |r: Responder, call: Call| watch(r, call, keyword.clone())),
    );
    let answer: String = caller
        .clone()
        .with_metadata("authorization", token)
        .call("Tap", &[tap])
        .await?;
    println!("{answer}");
    // Serve the callback until the proxy goes away.
    let end = caller.session().wait().await;
    println!("proxy gone: {end}");
    Ok(())
}

/// The tap's callback: reads the tee of one connection, and cuts it on `keyword`.
async fn watch(r: Responder, mut call: Call, keyword: Vec<u8>) {
    let Ok(tapped) = call.receive::<Tapped>().await else {
        return;
    };
    println!("tapped connection {} from {}", tapped.id, tapped.client);
    let Ok(mut verdicts) = r.continue_with(&()).await else {
        return;
    };
    // The keyword may straddle two reads: keep its length less one byte of what came before.
    let mut window: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = call.read_chunk(64 * 1024).await {
        window.extend_from_slice(&chunk);
        if window
            .windows(keyword.len())
            .any(|w| w == keyword.as_slice())
        {
            println!("cutting connection {}", tapped.id);
            let why = format!("saw {:?}", String::from_utf8_lossy(&keyword));
            let _ = verdicts.send(&Verdict { cut: why }).await;
            break;
        }
        let keep = keyword.len().saturating_sub(1).min(window.len());
        window.drain(..window.len() - keep);
    }
    let _ = verdicts.close();
}
