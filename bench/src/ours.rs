//! qtalk over qmux on TCP: the echo service, and bulk bytes through a continued call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qtalk::codec::{Cbor, Codec, Json};
use qtalk::rpc::{func, handler_fn, Call, Caller, RespondMux, Responder, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stats::{bulk_report, calls_report, drive, Report};
use crate::{Direction, CHUNK};

pub fn codec(name: &str) -> Arc<dyn Codec> {
    match name {
        "cbor" | "cbor-quic" | "cbor-layers" => Arc::new(Cbor),
        _ => Arc::new(Json),
    }
}

/// The handlers every run of ours serves: `echo` (one string) and `bytes` (continues into a raw
/// byte stream, then reads an upload to its end or writes a download of the given size).
pub fn service() -> RespondMux {
    let mux = RespondMux::new();
    mux.handle(
        "echo",
        func(|_c: Call, (s,): (String,)| async move { Ok::<_, String>(s) }),
    )
    .expect("register echo");
    mux.handle("bytes", handler_fn(bytes_handler))
        .expect("register bytes");
    mux
}

async fn bytes_handler(r: Responder, mut call: Call) {
    let (dir, size): (String, u64) = match call.params().await {
        Ok(p) => p,
        Err(e) => {
            let _ = r.error(e).await;
            return;
        }
    };
    let Ok(mut out) = r.continue_with(&()).await else {
        return;
    };
    // Zero-copy both ways (`read_chunk`, `write_bytes` of one shared block).
    if dir == "up" {
        // Read everything the caller sends, then tell it how much arrived.
        let mut total = 0u64;
        while let Ok(Some(chunk)) = call.read_chunk(CHUNK).await {
            total += chunk.len() as u64;
        }
        let _ = out.write_all(&total.to_be_bytes()).await;
        let _ = out.shutdown().await;
    } else {
        let block = block();
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            if out.write_bytes(block.slice(..n)).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = out.shutdown().await;
        // Keep the channel until the caller has read it all and closed.
        let _ = tokio::time::timeout(Duration::from_secs(30), call.read_chunk(CHUNK)).await;
    }
}

/// One `CHUNK` of the pattern [`fill`] writes, shared by every write.
pub fn block() -> bytes::Bytes {
    let mut buf = vec![0u8; CHUNK];
    fill(&mut buf);
    bytes::Bytes::from(buf)
}

pub fn fill(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
}

pub async fn serve(listener: qtalk::mux::Listener, codec_name: &str) -> std::io::Result<()> {
    let server = Server::new(service(), codec(codec_name));
    server.serve(listener).await
}

/// The base layer under the calls: qmux on TCP, or QUIC (`codec_name` ending in `-quic`).
pub async fn connect(addr: &str, codec_name: &str) -> std::io::Result<Caller> {
    let session = match codec_name.strip_suffix("-quic") {
        Some(_) => crate::quinn_sys::connect_session(addr).await?,
        None => qtalk::mux::transport::connect_tcp(addr, qtalk::mux::Config::default()).await?,
    };
    let caller = Caller::new(session, codec(codec_name));
    Ok(match codec_name {
        // The layered server wants the token in every call's metadata.
        "cbor-layers" => caller.with_metadata("authorization", crate::layers::TOKEN),
        _ => caller,
    })
}

/// `callers` tasks calling `echo` with `["hello"]` on one session for `secs`.
pub async fn calls(
    system: &str,
    addr: &str,
    codec_name: &str,
    callers: usize,
    secs: Duration,
    warmup: Duration,
) -> std::io::Result<Report> {
    let caller = connect(addr, codec_name).await?;
    let op = {
        let caller = caller.clone();
        move |_| {
            let caller = caller.clone();
            async move {
                match caller.call::<_, String>("echo", &["hello"]).await {
                    Ok(s) => s == "hello",
                    Err(e) => {
                        eprintln!("echo failed: {e}");
                        false
                    }
                }
            }
        }
    };
    drive(callers, warmup, op.clone()).await;
    let (elapsed, lat) = drive(callers, secs, op).await;
    caller.session().close();
    Ok(calls_report(system, "calls", callers, elapsed, lat))
}

/// Opening a channel and dropping it at once, one at a time on one session, for `secs`: the
/// OPEN / OPEN_CONFIRM round trip a call starts with.
pub async fn open_only(
    system: &str,
    addr: &str,
    secs: Duration,
    warmup: Duration,
) -> std::io::Result<Report> {
    let session = qtalk::mux::transport::connect_tcp(addr, qtalk::mux::Config::default()).await?;
    let op = {
        let session = session.clone();
        move |_| {
            let session = session.clone();
            async move {
                match session.open().await {
                    Ok(ch) => {
                        drop(ch);
                        true
                    }
                    Err(e) => {
                        eprintln!("open failed: {e}");
                        false
                    }
                }
            }
        }
    };
    drive(1, warmup, op.clone()).await;
    let (elapsed, lat) = drive(1, secs, op).await;
    session.close();
    Ok(calls_report(system, "open", 1, elapsed, lat))
}

/// `size` bytes through one continued `bytes` call, in `CHUNK`-byte writes.
pub async fn bulk(
    system: &str,
    addr: &str,
    codec_name: &str,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let caller = connect(addr, codec_name).await?;
    let start = Instant::now();
    let mut resp = caller.call_raw("bytes", &(dir.arg(), size)).await?;
    if !resp.is_continued() {
        return Err("bytes: the call did not continue".into());
    }
    let _null: qtalk::Value = resp.receive().await?;
    // Zero-copy both ways, as the handler (`write_bytes` of one shared block, `read_chunk`).
    let moved = match dir {
        Direction::Up => {
            let block = block();
            let mut left = size;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                resp.write_bytes(block.slice(..n)).await?;
                left -= n as u64;
            }
            resp.shutdown().await?;
            let mut count = [0u8; 8];
            resp.read_exact(&mut count).await?;
            u64::from_be_bytes(count)
        }
        Direction::Down => {
            let mut total = 0u64;
            while let Some(chunk) = resp.read_chunk(CHUNK).await? {
                total += chunk.len() as u64;
            }
            total
        }
    };
    let elapsed = start.elapsed();
    drop(resp);
    caller.session().close();
    if moved != size {
        return Err(format!("bytes: moved {moved} of {size}").into());
    }
    Ok(bulk_report(system, dir.workload(), size, elapsed))
}
