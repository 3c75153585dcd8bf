//! Session limits between two real peers: bursts past the channel limit are slowed down, not
//! refused; our own opens wait for a slot; an open nobody answers times out.

mod common;

use std::time::Duration;

use common::{tcp_pair, within};
use qtalk_mux::{Config, Error, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes every channel the peer opens, one task per channel.
fn echo_server(server: Session) {
    tokio::spawn(async move {
        while let Some(mut ch) = server.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if ch.read_to_end(&mut buf).await.is_ok() {
                    let _ = ch.write_all(&buf).await;
                }
            });
        }
    });
}

async fn echo_once(client: &Session, i: usize) -> Result<(), Error> {
    let mut ch = client.open().await?;
    let msg = format!("message {i}");
    ch.write_all(msg.as_bytes()).await?;
    ch.close_write()?;
    let mut back = String::new();
    ch.read_to_string(&mut back).await?;
    assert_eq!(back, msg);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_channels_opened_at_once_all_succeed() {
    let (client, server) = tcp_pair(Config::default()).await;
    echo_server(server);
    let opens = (0..5000).map(|i| {
        let client = client.clone();
        async move { echo_once(&client, i).await }
    });
    let results = within(60, "5000 channels", futures_util::future::join_all(opens)).await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 5000 failed: {:?}",
        failed.len(),
        failed[0]
    );
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_peers_channel_limit_opens_wait_for_a_slot() {
    let listener = qtalk_mux::Listener::bind_tcp(
        "127.0.0.1:0",
        Config::builder()
            .max_channels(3)
            .build()
            .expect("valid config"),
    )
    .await
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, limited) = tokio::join!(
        qtalk_mux::transport::connect_tcp(addr, Config::default()),
        listener.accept()
    );
    let (client, limited) = (client.unwrap(), limited.unwrap());
    // The limited side accepts and holds every channel until told to let go.
    let (release_tx, mut release_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                ch = limited.accept() => match ch {
                    Some(ch) => {
                        held.push(ch);
                        accepted_tx.send(held.len()).unwrap();
                    }
                    None => return,
                },
                Some(()) = release_rx.recv() => {
                    held.remove(0);
                }
            }
        }
    });
    let opener = client.clone();
    let opens = tokio::spawn(async move {
        let mut chans = Vec::new();
        for _ in 0..5 {
            chans.push(opener.open());
        }
        futures_util::future::join_all(chans).await
    });
    for n in 1..=3 {
        assert_eq!(within(5, "accept", accepted_rx.recv()).await, Some(n));
    }
    // Two OPENs wait unconfirmed; each released channel lets one in.
    release_tx.send(()).unwrap();
    assert_eq!(within(5, "fourth", accepted_rx.recv()).await, Some(3));
    release_tx.send(()).unwrap();
    assert_eq!(within(5, "fifth", accepted_rx.recv()).await, Some(3));
    let results = within(5, "opens", opens).await.unwrap();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    client.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_opens_wait_for_a_slot_at_our_channel_limit() {
    let (client, server) = tcp_pair(
        Config::builder()
            .max_channels(2)
            .build()
            .expect("valid config"),
    )
    .await;
    echo_server(server);
    let opens = (0..50).map(|i| {
        let client = client.clone();
        async move { echo_once(&client, i).await }
    });
    let results = within(20, "50 channels", futures_util::future::join_all(opens)).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert!(client.channel_count() <= 2);
    client.close();
}

#[tokio::test(start_paused = true)]
async fn an_open_nobody_answers_times_out() {
    // The other end reads everything and answers nothing.
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while matches!(b.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let config = Config::builder()
        .open_timeout(Duration::from_secs(7))
        .build()
        .expect("valid config");
    let session = Session::new(a, config);
    let started = tokio::time::Instant::now();
    let err = session.open().await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    session.close();
}
