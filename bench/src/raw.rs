//! Raw tokio TCP: the floor the others are compared with.
//!
//! A connection starts with one byte saying what it is for: `e` echoes every byte back (the
//! client sends length-prefixed `hello` messages), `u` reads an upload to its end and answers
//! its size (8 bytes, big endian), `d` reads a size (8 bytes) and writes that many bytes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::ours::fill;
use crate::stats::{bulk_report, calls_report, drive, Report};
use crate::{Direction, CHUNK};

/// `[0, 0, 0, 5] "hello"`.
pub(crate) const MSG: [u8; 9] = *b"\0\0\0\x05hello";

/// One echo round trip on a fresh stream: the `e` op byte and [`MSG`], then [`MSG`] back.
pub(crate) async fn echo_once<S>(s: &mut S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut msg = [b'e'; 10];
    msg[1..].copy_from_slice(&MSG);
    if s.write_all(&msg).await.is_err() {
        return false;
    }
    let mut back = [0u8; 9];
    s.read_exact(&mut back).await.is_ok() && back == MSG
}

pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = serve_conn(stream).await;
        });
    }
}

/// Serves one connection, or one qmux channel (the same protocol, see [`crate::bare`]).
pub async fn serve_conn<S>(mut s: S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    match s.read_u8().await? {
        b'e' => loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n]).await?;
        },
        b'u' => {
            let mut total = 0u64;
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            s.write_all(&total.to_be_bytes()).await?;
            s.shutdown().await
        }
        b'd' => {
            let mut left = s.read_u64().await?;
            fill(&mut buf);
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            s.shutdown().await?;
            // Wait for the client to close.
            let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn connect(addr: &str, op: u8) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&[op]).await?;
    Ok(s)
}

/// One caller: ping-pong of one 9-byte message at a time. More callers: pipelined on the one
/// connection, up to `callers` messages in flight; answers come back in order, so a queue of
/// send times matches them (the least an RPC client on one connection must do).
pub async fn calls(
    system: &str,
    addr: &str,
    callers: usize,
    secs: Duration,
    warmup: Duration,
) -> std::io::Result<Report> {
    let s = connect(addr, b'e').await?;
    if callers == 1 {
        let s = Arc::new(tokio::sync::Mutex::new(s));
        let op = move |_| {
            let s = s.clone();
            async move {
                let mut s = s.lock().await;
                let mut buf = MSG;
                s.write_all(&buf).await.is_ok()
                    && s.read_exact(&mut buf).await.is_ok()
                    && buf == MSG
            }
        };
        drive(1, warmup, op.clone()).await;
        let (elapsed, lat) = drive(1, secs, op).await;
        return Ok(calls_report(system, "calls", 1, elapsed, lat));
    }
    let (mut r, w) = s.into_split();
    type Waiters = Arc<Mutex<VecDeque<oneshot::Sender<()>>>>;
    let waiters: Waiters = Arc::default();
    let w = Arc::new(tokio::sync::Mutex::new(w));
    let reader = {
        let waiters = waiters.clone();
        tokio::spawn(async move {
            let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, &mut r);
            let mut buf = MSG;
            while rd.read_exact(&mut buf).await.is_ok() {
                let next = waiters.lock().unwrap().pop_front();
                match next {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None => break,
                }
            }
        })
    };
    let op = {
        let w = w.clone();
        move |_| {
            let w = w.clone();
            let waiters = waiters.clone();
            async move {
                let (tx, rx) = oneshot::channel();
                {
                    let mut w = w.lock().await;
                    waiters.lock().unwrap().push_back(tx);
                    if w.write_all(&MSG).await.is_err() {
                        return false;
                    }
                }
                rx.await.is_ok()
            }
        }
    };
    drive(callers, warmup, op.clone()).await;
    let (elapsed, lat) = drive(callers, secs, op).await;
    let _ = w.lock().await.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    Ok(calls_report(system, "calls", callers, elapsed, lat))
}

/// `size` bytes over one connection in `CHUNK`-byte writes.
pub async fn bulk(
    system: &str,
    addr: &str,
    dir: Direction,
    size: u64,
) -> Result<Report, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let op = match dir {
        Direction::Up => b'u',
        Direction::Down => b'd',
    };
    let s = connect(addr, op).await?;
    let moved = transfer(s, dir, size).await?;
    let elapsed = start.elapsed();
    if moved != size {
        return Err(format!("raw: moved {moved} of {size}").into());
    }
    Ok(bulk_report(system, dir.workload(), size, elapsed))
}

/// The client side of a bulk transfer on a stream whose op byte was sent: the bytes moved.
pub async fn transfer<S>(mut s: S, dir: Direction, size: u64) -> std::io::Result<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    Ok(match dir {
        Direction::Up => {
            fill(&mut buf);
            let mut left = size;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                s.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            s.shutdown().await?;
            s.read_u64().await?
        }
        Direction::Down => {
            s.write_all(&size.to_be_bytes()).await?;
            let mut total = 0u64;
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            total
        }
    })
}
