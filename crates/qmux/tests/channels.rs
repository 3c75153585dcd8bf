//! Channel behaviour between two of our sessions over real transports.

mod common;

use std::time::Duration;

use common::{basic_exchange, echo_interleaved, pattern, pipe_pair, tcp_pair, unix_pair, within};
use qtalk_mux::{Config, Error, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_pipe() {
    let (a, b) = pipe_pair(Config::default());
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_tcp() {
    let (a, b) = tcp_pair(Config::default()).await;
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_unix_socket() {
    let (a, b) = unix_pair(Config::default()).await;
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_exchange_over_os_pipes() {
    // Two OS pipes, as for a child process's stdin/stdout.
    let (a_tx, b_rx) = tokio::net::unix::pipe::pipe().unwrap();
    let (b_tx, a_rx) = tokio::net::unix::pipe::pipe().unwrap();
    let a = Session::from_split(a_rx, a_tx, Config::default());
    let b = Session::from_split(b_rx, b_tx, Config::default());
    basic_exchange(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_over_stdio() {
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let echo = examples.join("stdio_echo");
    if !echo.exists() {
        // `cargo test --test channels` does not build examples; build the one we need.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "qmux", "--example", "stdio_echo"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert!(echo.exists(), "{} missing", echo.display());
    let (session, mut child) =
        qtalk_mux::transport::spawn(echo.to_str().unwrap(), Config::default()).unwrap();
    let mut handles = Vec::new();
    for i in 0..8 {
        let session = session.clone();
        handles.push(tokio::spawn(async move {
            let mut ch = session.open().await.unwrap();
            let msg = pattern(200_000, i);
            ch.write_all(&msg).await.unwrap();
            ch.close_write().unwrap();
            let mut back = Vec::new();
            ch.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, msg);
        }));
    }
    for h in handles {
        within(20, "echo through child", h).await.unwrap();
    }
    session.close();
    within(5, "wait", session.wait()).await;
    let status = within(5, "child exit", child.wait()).await.unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_channels_interleaved() {
    let (a, b) = tcp_pair(Config::default()).await;
    tokio::spawn(echo_all_copying(b.clone()));
    echo_interleaved(&a, 100, 50_000).await;
    a.close();
}

/// Accepts every channel and echoes it through `AsyncRead`/`AsyncWrite` copies (the zero-copy
/// echo is `common::echo_all`), half-closing after the peer's EOF.
async fn echo_all_copying(s: Session) {
    while let Some(ch) = s.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = ch.into_split();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = w.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_with_content_check() {
    let (a, b) = tcp_pair(Config::default()).await;
    tokio::spawn(echo_all_copying(b.clone()));
    let ch = a.open().await.unwrap();
    let (mut r, mut w) = ch.into_split();
    const SIZE: usize = 64 << 20;
    let writer = tokio::spawn(async move {
        let block = pattern(1 << 20, 0);
        for _ in 0..SIZE / block.len() {
            w.write_all(&block).await.unwrap();
        }
        w.shutdown().await.unwrap();
        w
    });
    let expect = pattern(1 << 20, 0);
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let check = async {
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            for (k, byte) in buf[..n].iter().enumerate() {
                let pos = (got + k) % expect.len();
                assert_eq!(*byte, expect[pos], "byte {}", got + k);
            }
            got += n;
        }
    };
    within(60, "64 MiB echo", check).await;
    assert_eq!(got, SIZE);
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_reads_complete_in_order() {
    let (a, b) = pipe_pair(Config::default());
    let b2 = b.clone();
    tokio::spawn(async move {
        let mut ch = b2.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        ch.write_all(b"abc").await.unwrap();
        ch.close_write().unwrap();
        let mut sink = Vec::new();
        let _ = ch.read_to_end(&mut sink).await;
    });
    let mut ch = a.open().await.unwrap();
    let mut one = [0u8; 1];
    let mut two = [0u8; 2];
    within(5, "read 1", ch.read_exact(&mut one)).await.unwrap();
    within(5, "read 2", ch.read_exact(&mut two)).await.unwrap();
    assert_eq!(&one, b"a");
    assert_eq!(&two, b"bc");
}

/// Opens, uses and closes `n` channels one after another; returns their ids.
async fn sequential_ids(a: &Session, n: usize) -> Vec<u32> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let mut ch = a.open().await.unwrap();
        ids.push(ch.id().get());
        ch.write_all(b"ping").await.unwrap();
        ch.close_write().unwrap();
        let mut back = Vec::new();
        ch.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ping");
        drop(ch);
        // The id is freed once the CLOSE handshake completes.
        within(5, "close handshake", async {
            while a.channel_count() > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_reused_after_close() {
    // As the reference: the lowest free id, at once.
    let (a, b) = pipe_pair(
        Config::builder()
            .id_reuse_delay(0)
            .build()
            .expect("valid config"),
    );
    tokio::spawn(echo_all_copying(b.clone()));
    assert_eq!(sequential_ids(&a, 5).await, vec![0, 0, 0, 0, 0]);
    within(5, "peer frees ids", async {
        while b.channel_count() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;

    // By default an id waits for 256 other channels to close before it is reused.
    let (a, b) = pipe_pair(Config::default());
    tokio::spawn(echo_all_copying(b.clone()));
    let ids = sequential_ids(&a, 300).await;
    let expect: Vec<u32> = (0..257).chain(0..43).collect();
    assert_eq!(ids, expect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_initiated_by_either_side() {
    let (a, b) = pipe_pair(Config::default());
    // Opener closes first: the acceptor reads the data, then end-of-stream; its writes fail.
    let b2 = b.clone();
    let acceptor = tokio::spawn(async move {
        let mut ch = b2.accept().await.unwrap();
        let mut got = Vec::new();
        ch.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        // The peer's CLOSE makes writes fail.
        let err = ch.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    });
    let mut ch = a.open().await.unwrap();
    ch.write_all(b"bye").await.unwrap();
    ch.close().unwrap();
    assert!(ch.write_all(b"more").await.is_err());
    within(5, "acceptor", acceptor).await.unwrap();
    drop(ch);

    // Acceptor closes first.
    let b2 = b.clone();
    let acceptor = tokio::spawn(async move {
        let mut ch = b2.accept().await.unwrap();
        ch.write_all(b"from acceptor").await.unwrap();
        ch.close().unwrap();
    });
    let mut ch = a.open().await.unwrap();
    let mut got = Vec::new();
    within(5, "read", ch.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"from acceptor");
    acceptor.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_times_out_against_a_silent_peer() {
    // The peer accepted the socket but runs no session.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let keep = tokio::spawn(async move { listener.accept().await });
    let s = qtalk_mux::transport::connect_tcp(addr, Config::default())
        .await
        .unwrap();
    let err = s.open_timeout(Duration::from_millis(10)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err}");
    // The abandoned open keeps its id until answered; the session still works.
    assert!(!s.is_closed());
    keep.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_fails_when_the_peer_never_accepts() {
    let cfg = Config::builder()
        .accept_timeout(Duration::from_millis(100))
        .build()
        .expect("valid config");
    let (a, b) = pipe_pair(cfg);
    let start = std::time::Instant::now();
    let err = within(5, "open", a.open()).await.unwrap_err();
    assert!(matches!(err, Error::OpenRefused), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(90));
    // Nothing stalled: a later channel is accepted normally.
    let b2 = b.clone();
    let acc = tokio::spawn(async move { b2.accept().await.is_some() });
    within(5, "open after refusal", a.open()).await.unwrap();
    assert!(acc.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_channels_and_half_close() {
    // client <-> (front | proxy | back) <-> server
    let (client, front) = pipe_pair(Config::default());
    let (back, server) = pipe_pair(Config::default());
    let proxy = tokio::spawn({
        let (front, back) = (front.clone(), back.clone());
        async move { qtalk_mux::proxy(&back, &front).await }
    });
    tokio::spawn(echo_all_copying(server.clone()));
    for i in 0..3 {
        let mut ch = within(5, "open through proxy", client.open())
            .await
            .unwrap();
        let msg = pattern(300_000, i);
        ch.write_all(&msg).await.unwrap();
        ch.close_write().unwrap();
        let mut back_data = Vec::new();
        within(10, "echo through proxy", ch.read_to_end(&mut back_data))
            .await
            .unwrap();
        assert_eq!(back_data, msg);
    }
    // Channels opened by the far side reach the near side too (proxy the other way).
    let reverse = tokio::spawn({
        let (front, back) = (front.clone(), back.clone());
        async move { qtalk_mux::proxy(&front, &back).await }
    });
    let c2 = client.clone();
    let acc = tokio::spawn(async move {
        let mut ch = c2.accept().await.unwrap();
        let mut got = Vec::new();
        ch.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut ch = within(5, "reverse open", server.open()).await.unwrap();
    ch.write_all(b"from the far side").await.unwrap();
    ch.close_write().unwrap();
    assert_eq!(
        within(5, "reverse", acc).await.unwrap(),
        b"from the far side"
    );
    client.close();
    let cause = within(5, "proxy ends", proxy).await.unwrap();
    assert!(matches!(cause, Error::PeerClosed), "{cause}");
    server.close();
    within(5, "reverse proxy ends", reverse).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_to_a_closed_session_fails_cleanly() {
    let (client, front) = pipe_pair(Config::default());
    let (back, server) = pipe_pair(Config::default());
    back.close();
    within(5, "back closed", back.wait()).await;
    drop(server);
    let proxy = tokio::spawn({
        let (front, back) = (front.clone(), back.clone());
        async move { qtalk_mux::proxy(&back, &front).await }
    });
    // The local open succeeds (the proxy accepts it) ...
    let open = tokio::spawn({
        let client = client.clone();
        async move { client.open().await }
    });
    let cause = within(5, "proxy returns", proxy).await.unwrap();
    assert!(matches!(cause, Error::Closed), "{cause}");
    // ... but the proxy drops the channel it could not forward: reads end, writes fail.
    let mut ch = within(5, "open", open).await.unwrap().unwrap();
    let mut sink = Vec::new();
    within(5, "read", ch.read_to_end(&mut sink)).await.unwrap();
    assert!(sink.is_empty());
    let err = ch.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}
