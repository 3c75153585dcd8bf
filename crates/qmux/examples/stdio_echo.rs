//! Serves qmux on stdin/stdout and echoes every channel back to its opener: the child-process
//! transport's test peer, and a minimal example of a stdio service.
//!
//! Run it under a parent that speaks qmux, e.g. `qtalk_mux::transport::spawn("stdio_echo", ..)`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let session = qtalk_mux::transport::stdio(qtalk_mux::Config::default());
    while let Some(mut ch) = session.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match ch.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if ch.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = ch.shutdown().await;
        });
    }
    eprintln!("stdio_echo: {}", session.wait().await);
}
