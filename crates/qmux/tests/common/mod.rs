//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use qmux::{Config, Listener, Session};

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
    let listener = Listener::bind_tcp("127.0.0.1:0", config.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(
        qmux::transport::connect_tcp(addr, config),
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
        qmux::transport::connect_unix(&path, config),
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
