//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use qtalk_mux::{Config, Error, Listener, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fails the test when `f` does not finish within `secs` seconds.
pub async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s: {what}"),
    }
}

/// Two sessions over an in-memory pipe.
pub fn pipe_pair(config: Config) -> (Session, Session) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    (Session::new(a, config.clone()), Session::new(b, config))
}

/// Two sessions over TCP loopback.
pub async fn tcp_pair(config: Config) -> (Session, Session) {
    let listener = Listener::bind_tcp("127.0.0.1:0", config.clone())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::transport::connect_tcp(addr, config),
        listener.accept()
    );
    (client.unwrap(), server.unwrap())
}

/// Two sessions over a Unix socket.
pub async fn unix_pair(config: Config) -> (Session, Session) {
    let path = std::env::temp_dir().join(format!(
        "qmux-test-{}-{}.sock",
        std::process::id(),
        rand_suffix()
    ));
    let listener = Listener::bind_unix(&path, config.clone()).unwrap();
    let (client, server) = tokio::join!(
        qtalk_mux::transport::connect_unix(&path, config),
        listener.accept()
    );
    let _ = std::fs::remove_file(&path);
    (client.unwrap(), server.unwrap())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
}

/// Deterministic test payload: byte k of stream `seed`.
pub fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|k| ((k + 7 * seed) % 251) as u8).collect()
}

/// A hand-driven peer that speaks raw frames, to test how a session reacts to exact input.
pub struct RawPeer {
    pub io: tokio::net::TcpStream,
    buf: bytes::BytesMut,
}

impl RawPeer {
    /// A raw peer connected to a new session (the session is the TCP server side).
    pub async fn connect(config: Config) -> (RawPeer, Session) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (io, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let session = qtalk_mux::transport::over_tcp(accepted.unwrap().0, config);
        (
            RawPeer {
                io: io.unwrap(),
                buf: bytes::BytesMut::new(),
            },
            session,
        )
    }

    /// Wraps an established stream.
    pub fn new(io: tokio::net::TcpStream) -> RawPeer {
        RawPeer {
            io,
            buf: bytes::BytesMut::new(),
        }
    }

    pub async fn send(&mut self, f: qtalk_mux::qtalk_mux_proto::Frame) {
        let mut b = bytes::BytesMut::new();
        f.encode(&mut b);
        self.send_raw(&b).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.io.write_all(bytes).await.unwrap();
    }

    /// Next frame from the session; `None` when the connection ended.
    pub async fn recv(&mut self) -> Option<qtalk_mux::qtalk_mux_proto::Frame> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(f) =
                qtalk_mux::qtalk_mux_proto::Frame::decode(&mut self.buf, u32::MAX).unwrap()
            {
                return Some(f);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Next frame within `ms` milliseconds, if any.
    pub async fn recv_within(&mut self, ms: u64) -> Option<qtalk_mux::qtalk_mux_proto::Frame> {
        tokio::time::timeout(Duration::from_millis(ms), self.recv())
            .await
            .ok()
            .flatten()
    }
}

/// The reference's basic exchanges: B writes "Hello world" and closes, A reads it all then EOF;
/// then B opens, A echoes and half-closes, B reads back exactly what it sent.
pub async fn basic_exchange(a: Session, b: Session) {
    let b2 = b.clone();
    let hello = tokio::spawn(async move {
        let mut ch = b2.accept().await.expect("accept");
        ch.write_all(b"Hello world").await.unwrap();
        ch.close().unwrap();
        // Closing twice is harmless.
        ch.close().unwrap();
    });
    let mut ch = within(5, "open", a.open()).await.unwrap();
    let mut got = Vec::new();
    within(5, "read hello", ch.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"Hello world");
    ch.close().unwrap();
    ch.close().unwrap();
    hello.await.unwrap();

    let a2 = a.clone();
    let echo = tokio::spawn(async move {
        let mut ch = a2.accept().await.expect("accept");
        let mut buf = Vec::new();
        ch.read_to_end(&mut buf).await.unwrap();
        ch.write_all(&buf).await.unwrap();
        ch.close_write().unwrap();
    });
    let mut ch = within(5, "open", b.open()).await.unwrap();
    let msg = pattern(100_000, 3);
    ch.write_all(&msg).await.unwrap();
    ch.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(5, "read echo", ch.read_to_end(&mut back))
        .await
        .unwrap();
    assert_eq!(back, msg);
    echo.await.unwrap();

    a.close();
    let err = within(5, "wait", a.wait()).await;
    assert!(matches!(err, Error::Closed), "{err}");
    let err = within(5, "peer wait", b.wait()).await;
    assert!(matches!(err, Error::PeerClosed), "{err}");
}

/// Accepts every channel and echoes it without copying, half-closing after the peer's EOF.
pub async fn echo_all(s: Session) {
    while let Some(ch) = s.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = ch.into_split();
            while let Ok(Some(chunk)) = r.read_chunk(usize::MAX).await {
                if w.write_bytes(chunk).await.is_err() {
                    break;
                }
            }
            let _ = w.shutdown().await;
        });
    }
}

/// Opens `channels` channels on `a` at once (the peer echoes them) and writes each its own
/// pattern in 1000-byte pieces, yielding between pieces so the channels interleave; every
/// channel must read back exactly what it wrote.
pub async fn echo_interleaved(a: &Session, channels: usize, base_len: usize) {
    let mut tasks = Vec::new();
    for i in 0..channels {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let ch = a.open().await.unwrap();
            let msg = pattern(base_len + i * 100, i);
            let (mut r, mut w) = ch.into_split();
            let m2 = msg.clone();
            let writer = tokio::spawn(async move {
                for part in m2.chunks(1000) {
                    w.write_all(part).await.unwrap();
                    tokio::task::yield_now().await;
                }
                w.shutdown().await.unwrap();
                w
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            let _w = writer.await.unwrap();
            assert_eq!(back, msg, "channel {i}");
        }));
    }
    for t in tasks {
        within(30, "interleaved channels", t).await.unwrap();
    }
}
