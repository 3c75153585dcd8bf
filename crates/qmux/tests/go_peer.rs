//! Interop with the Go reference (qtalk-go's `mux`), driven as a real peer process.
//!
//! The peer is the program in `interop/go`; `scripts/test.sh` builds it and exports its path as
//! `QTALK_GO_PEER`. Without it these tests print a SKIPPED notice and pass (or fail, with `QTALK_REQUIRE_GO_PEER=1`), so CI
//! logs always say whether the Go interop ran.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{echo_all, pattern, within};
use qtalk_mux::{Config, Session};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

enum Link {
    /// qmux over the peer's stdin/stdout.
    Stdio,
    /// The peer listens on TCP; we dial.
    GoListens,
    /// We listen on TCP; the peer dials.
    GoDials,
    /// The peer listens on WebSocket (`mux.ListenWS`); we connect.
    #[cfg(feature = "websocket")]
    GoListensWs,
    /// We listen on WebSocket; the peer dials (`mux.DialWS`).
    #[cfg(feature = "websocket")]
    GoDialsWs,
}

struct GoPeer {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    session: Session,
}

fn peer_path() -> Option<String> {
    // `scripts/test.sh` tallies ran/skipped through QTALK_GO_PEER_TALLY; with
    // QTALK_REQUIRE_GO_PEER=1 a missing peer fails the test instead of skipping it.
    let found = std::env::var("QTALK_GO_PEER")
        .ok()
        .filter(|p| std::path::Path::new(p).exists());
    if found.is_none() && std::env::var("QTALK_REQUIRE_GO_PEER").as_deref() == Ok("1") {
        panic!("QTALK_REQUIRE_GO_PEER=1 but QTALK_GO_PEER names no built Go peer");
    }
    if let Ok(tally) = std::env::var("QTALK_GO_PEER_TALLY") {
        use std::io::Write;
        let verdict = if found.is_some() { "ran" } else { "skipped" };
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(tally);
        if let Ok(mut f) = file {
            // One write per line: tests run in parallel.
            let _ = f.write_all(format!("{verdict} {test}\n").as_bytes());
        }
    }
    if found.is_none() {
        eprintln!(
            "SKIPPED: Go reference peer not available (QTALK_GO_PEER unset); run scripts/test.sh"
        );
    }
    found
}

/// The address from the peer's `listening <host:port>` line.
async fn listening_addr(lines: &mut mpsc::UnboundedReceiver<String>) -> String {
    let line = within(10, "listening line", async {
        loop {
            let l = lines.recv().await.expect("peer exited");
            if l.starts_with("listening ") {
                return l;
            }
        }
    })
    .await;
    line.trim_start_matches("listening ").trim().to_string()
}

impl GoPeer {
    async fn start(path: &str, link: Link, args: &[&str]) -> GoPeer {
        let mut cmd = Command::new(path);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let listener = match link {
            Link::GoDials => {
                let l = qtalk_mux::Listener::bind_tcp("127.0.0.1:0", Config::default())
                    .await
                    .unwrap();
                cmd.args(["-dial", &l.local_addr().unwrap().to_string()]);
                Some(l)
            }
            Link::GoListens => {
                cmd.args(["-listen", "127.0.0.1:0"]);
                None
            }
            #[cfg(feature = "websocket")]
            Link::GoDialsWs => {
                let l = qtalk_mux::Listener::bind_ws("127.0.0.1:0", Config::default())
                    .await
                    .unwrap();
                cmd.args(["-ws", "-dial", &l.local_addr().unwrap().to_string()]);
                Some(l)
            }
            #[cfg(feature = "websocket")]
            Link::GoListensWs => {
                cmd.args(["-ws", "-listen", "127.0.0.1:0"]);
                None
            }
            Link::Stdio => None,
        };
        let mut child = cmd.spawn().expect("start Go peer");
        let stderr = child.stderr.take().unwrap();
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                eprintln!("go-peer: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let session = match link {
            Link::Stdio => qtalk_mux::transport::over_child(&mut child, Config::default()).unwrap(),
            Link::GoDials => within(10, "Go dials", listener.unwrap().accept())
                .await
                .unwrap(),
            #[cfg(feature = "websocket")]
            Link::GoDialsWs => within(10, "Go dials", listener.unwrap().accept())
                .await
                .unwrap(),
            Link::GoListens => {
                let addr = listening_addr(&mut lines).await;
                qtalk_mux::transport::connect_tcp(addr, Config::default())
                    .await
                    .unwrap()
            }
            #[cfg(feature = "websocket")]
            Link::GoListensWs => {
                let addr = listening_addr(&mut lines).await;
                let url = format!("ws://{addr}/");
                qtalk_mux::transport::ws::connect_ws(&url, Config::default())
                    .await
                    .unwrap()
            }
        };
        GoPeer {
            child,
            lines,
            session,
        }
    }

    /// Waits for the next log line starting with `prefix`, skipping others.
    async fn expect(&mut self, prefix: &str) -> String {
        within(30, prefix, async {
            loop {
                match self.lines.recv().await {
                    Some(l) if l.starts_with(prefix) => return l,
                    Some(l) if l.starts_with("fail") => panic!("Go peer failed: {l}"),
                    Some(_) => {}
                    None => panic!("Go peer exited before logging {prefix:?}"),
                }
            }
        })
        .await
    }

    async fn exit_ok(mut self) {
        let status = within(30, "Go peer exit", self.child.wait()).await.unwrap();
        assert!(status.success(), "Go peer exited with {status}");
    }
}

async fn rust_opens_go_echoes(link: Link, channels: usize, size: usize) {
    let Some(path) = peer_path() else { return };
    let mut peer = GoPeer::start(&path, link, &["-mode", "echo"]).await;
    let mut tasks = Vec::new();
    for i in 0..channels {
        let s = peer.session.clone();
        tasks.push(tokio::spawn(async move {
            let ch = s.open().await.unwrap();
            let (mut r, mut w) = ch.into_split();
            let msg = pattern(size, i);
            let m2 = msg.clone();
            let writer = tokio::spawn(async move {
                for part in m2.chunks(40_000) {
                    w.write_all(part).await.unwrap();
                }
                w.shutdown().await.unwrap();
                w
            });
            let mut back = Vec::with_capacity(size);
            r.read_to_end(&mut back).await.unwrap();
            let _w = writer.await.unwrap();
            assert!(back == msg, "channel {i}: echo differs");
        }));
    }
    for t in tasks {
        within(60, "echo through Go", t).await.unwrap();
    }
    for _ in 0..channels {
        peer.expect("closed ").await;
    }
    peer.session.close();
    peer.expect("session-end").await;
    peer.exit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_opens_go_accepts_over_stdio() {
    rust_opens_go_echoes(Link::Stdio, 1, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_opens_go_accepts_over_tcp() {
    rust_opens_go_echoes(Link::GoListens, 1, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_opens_100_channels_at_once() {
    rust_opens_go_echoes(Link::GoListens, 100, 64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_rust_to_go_and_back() {
    rust_opens_go_echoes(Link::Stdio, 1, 64 << 20).await;
}

async fn go_opens_rust_echoes(link: Link, channels: usize, size: usize) {
    let Some(path) = peer_path() else { return };
    let (c, s) = (channels.to_string(), size.to_string());
    let peer = GoPeer::start(
        &path,
        link,
        &["-mode", "open", "-channels", &c, "-size", &s],
    )
    .await;
    tokio::spawn(echo_all(peer.session.clone()));
    let mut peer = peer;
    let mut ok = 0;
    while ok < channels {
        peer.expect("ok ").await;
        ok += 1;
    }
    peer.expect("done").await;
    peer.exit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_opens_rust_accepts_over_stdio() {
    go_opens_rust_echoes(Link::Stdio, 1, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_opens_rust_accepts_over_tcp() {
    go_opens_rust_echoes(Link::GoDials, 1, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_opens_100_channels_at_once() {
    go_opens_rust_echoes(Link::GoDials, 100, 64 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_go_to_rust_and_back() {
    go_opens_rust_echoes(Link::Stdio, 1, 64 << 20).await;
}

#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_opens_go_echoes_over_websocket() {
    rust_opens_go_echoes(Link::GoListensWs, 1, 1 << 20).await;
}

#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_opens_16_channels_go_echoes_over_websocket() {
    rust_opens_go_echoes(Link::GoListensWs, 16, 256 * 1024).await;
}

#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_opens_rust_echoes_over_websocket() {
    go_opens_rust_echoes(Link::GoDialsWs, 1, 1 << 20).await;
}

#[cfg(feature = "websocket")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_opens_16_channels_rust_echoes_over_websocket() {
    go_opens_rust_echoes(Link::GoDialsWs, 16, 256 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_writes_hello_and_closes() {
    let Some(path) = peer_path() else { return };
    let mut peer = GoPeer::start(&path, Link::Stdio, &["-mode", "hello"]).await;
    let mut ch = peer.session.open().await.unwrap();
    let mut got = Vec::new();
    within(10, "hello", ch.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"Hello world");
    peer.expect("hello ").await;
    // Go closed first: our writes now fail.
    assert!(ch.write_all(b"x").await.is_err());
    peer.session.close();
    peer.exit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_closes_first_and_go_reads_everything() {
    let Some(path) = peer_path() else { return };
    let mut peer = GoPeer::start(&path, Link::GoListens, &["-mode", "recv"]).await;
    let mut ch = peer.session.open().await.unwrap();
    let data = pattern(3_000_000, 9);
    ch.write_all(&data).await.unwrap();
    ch.close().unwrap(); // CLOSE without EOF
    let line = peer.expect("recv ").await;
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], data.len().to_string(), "{line}");
    let digest = hex(&Sha256::digest(&data));
    assert_eq!(fields[3], digest, "{line}");
    peer.session.close();
    peer.exit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_closes_first_without_eof() {
    let Some(path) = peer_path() else { return };
    let mut peer = GoPeer::start(&path, Link::Stdio, &["-mode", "closefirst"]).await;
    let mut ch = peer.session.open().await.unwrap();
    ch.write_all(b"12345").await.unwrap();
    let mut got = Vec::new();
    within(10, "read until Go closes", ch.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(peer.expect("read ").await, "read 0 12345");
    peer.expect("closed 0").await;
    peer.session.close();
    peer.exit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_reused_after_close_on_both_sides() {
    let Some(path) = peer_path() else { return };
    // Rust opens one channel at a time: Go reuses its id 0; ours advance (reuse is delayed).
    let mut peer = GoPeer::start(&path, Link::Stdio, &["-mode", "echo"]).await;
    for round in 0..5 {
        let mut ch = peer.session.open().await.unwrap();
        assert_eq!(ch.id().get(), round, "round {round}");
        ch.write_all(b"ping").await.unwrap();
        ch.close_write().unwrap();
        let mut back = Vec::new();
        ch.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");
        assert_eq!(peer.expect("accept ").await, "accept 0");
        peer.expect("closed ").await;
        drop(ch);
        within(5, "id freed", async {
            while peer.session.channel_count() > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
    }
    peer.session.close();
    peer.exit_ok().await;

    // Go opens one channel at a time: Go reuses its id 0 too.
    let peer = GoPeer::start(
        &path,
        Link::Stdio,
        &["-mode", "sequential", "-channels", "5"],
    )
    .await;
    tokio::spawn(echo_all(peer.session.clone()));
    let mut peer = peer;
    for i in 0..5 {
        assert_eq!(peer.expect("open ").await, format!("open {i} 0"));
    }
    peer.expect("done").await;
    peer.exit_ok().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
