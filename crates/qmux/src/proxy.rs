//! Forwarding channels from one session to another.

use tokio::io::AsyncWriteExt;

use crate::{Channel, Error, ReadHalf, Session, WriteHalf};

/// Accepts every channel the peer of `src` opens, opens a matching channel on `dst`, and copies
/// bytes both ways, passing half-closes through. Returns when `src` ends (with its end cause)
/// or as soon as a channel cannot be opened on `dst` (with that error).
pub async fn proxy(dst: &Session, src: &Session) -> Error {
    loop {
        let Some(inbound) = src.accept().await else {
            return src.wait().await;
        };
        let outbound = match dst.open().await {
            Ok(ch) => ch,
            Err(e) => return e,
        };
        tokio::spawn(join(inbound, outbound));
    }
}

/// Copies between two channels in both directions, forwarding each EOF, until both directions
/// have ended; then both channels are closed.
pub async fn join(a: Channel, b: Channel) {
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    tokio::join!(pipe(ar, bw), pipe(br, aw));
}

/// Copies one direction; forwards end-of-stream as EOF. Returns the halves so that the channel
/// is closed only after both directions finished.
async fn pipe(mut from: ReadHalf, mut to: WriteHalf) -> (ReadHalf, WriteHalf) {
    while let Ok(Some(chunk)) = from.read_chunk(usize::MAX).await {
        if to.write_bytes(chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    (from, to)
}
