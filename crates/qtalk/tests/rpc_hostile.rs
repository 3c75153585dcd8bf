//! Bad input at the rpc layer: each case gives a clear error on the right side, without a
//! panic or a hang, and the session keeps serving other calls.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use qtalk::codec::Json;
use qtalk::rpc::{encode_frame, func, Call, CallHeader, Caller, Error, Peer, ResponseHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A responding peer with an `Upper(string)` function, and the raw session facing it.
fn responder() -> (Peer, qtalk::mux::Session) {
    responder_with(qtalk::rpc::Options::default())
}

/// [`responder`] with `options`.
fn responder_with(options: qtalk::rpc::Options) -> (Peer, qtalk::mux::Session) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let peer = Peer::with_options(
        qtalk::mux::Session::new(a, Default::default()),
        Json,
        options,
    );
    peer.handle(
        "Upper",
        func(|_c: Call, (s,): (String,)| async move { Ok::<_, String>(s.to_uppercase()) }),
    )
    .unwrap();
    peer.respond();
    (peer, qtalk::mux::Session::new(b, Default::default()))
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + body.len());
    b.put_u32(body.len() as u32);
    b.extend_from_slice(body);
    b
}

/// Reads a whole response (all frames until the responder closes) and returns the header and
/// the raw value bodies.
async fn read_response(ch: &mut qtalk::mux::Channel) -> (ResponseHeader, Vec<Vec<u8>>) {
    let mut all = Vec::new();
    within(5, "response", ch.read_to_end(&mut all))
        .await
        .unwrap();
    let mut frames = Vec::new();
    let mut rest = &all[..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        frames.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty(), "trailing bytes {rest:?}");
    let header: ResponseHeader = serde_json::from_slice(&frames[0]).unwrap();
    (header, frames[1..].to_vec())
}

async fn still_serving(raw: &qtalk::mux::Session) {
    let caller = Caller::new(raw.clone(), Json);
    let v: String = within(5, "normal call", caller.call("Upper", &["ok"]))
        .await
        .unwrap();
    assert_eq!(v, "OK");
}

#[tokio::test]
async fn undecodable_call_header_gets_an_error_response() {
    let (_peer, raw) = responder();
    let mut ch = raw.open().await.unwrap();
    ch.write_all(&frame_of(b"{not json")).await.unwrap();
    let (header, values) = read_response(&mut ch).await;
    let err = header.error().expect("an error");
    assert!(err.starts_with("bad call header: "), "{err}");
    assert_eq!(values, vec![b"null\n".to_vec()]);
    still_serving(&raw).await;
}

#[tokio::test]
async fn undecodable_args_are_a_remote_error() {
    let (_peer, raw) = responder();
    let mut ch = raw.open().await.unwrap();
    let mut buf = BytesMut::new();
    encode_frame(&Json, &CallHeader::new("Upper"), &mut buf).unwrap();
    buf.extend_from_slice(&frame_of(b"[\"unterminated"));
    ch.write_all(&buf).await.unwrap();
    let (header, values) = read_response(&mut ch).await;
    let err = header.error().expect("an error");
    assert!(err.contains("decode"), "{err}");
    assert_eq!(values.len(), 1);
    still_serving(&raw).await;
}

#[tokio::test]
async fn oversized_rpc_frame_is_refused_before_allocation() {
    let (_peer, raw) = responder();
    let mut ch = raw.open().await.unwrap();
    let mut buf = BytesMut::new();
    encode_frame(&Json, &CallHeader::new("Upper"), &mut buf).unwrap();
    buf.put_u32(0x7fff_ffff); // args claim 2 GiB; none of it follows
    ch.write_all(&buf).await.unwrap();
    let (header, _) = read_response(&mut ch).await;
    let err = header.error().expect("an error");
    assert!(err.contains("exceeds the limit"), "{err}");
    still_serving(&raw).await;
}

#[tokio::test]
async fn oversized_call_header_is_refused() {
    let (_peer, raw) = responder();
    let mut ch = raw.open().await.unwrap();
    ch.write_all(&0xffff_ffffu32.to_be_bytes()).await.unwrap();
    let (header, _) = read_response(&mut ch).await;
    let err = header.error().expect("an error");
    assert!(err.contains("exceeds the limit"), "{err}");
    still_serving(&raw).await;
}

#[tokio::test]
async fn eof_before_the_header_closes_quietly() {
    let (_peer, raw) = responder();
    let mut ch = raw.open().await.unwrap();
    ch.write_all(&[0, 0]).await.unwrap(); // half a length prefix
    ch.close_write().unwrap();
    let mut rest = Vec::new();
    within(5, "responder closes", ch.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    still_serving(&raw).await;
}

/// A raw responder answering every call with `reply` bytes and then closing.
fn raw_responder(reply: Vec<u8>) -> (Caller, qtalk::mux::Session) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let raw = qtalk::mux::Session::new(b, Default::default());
    let r2 = raw.clone();
    tokio::spawn(async move {
        while let Some(mut ch) = r2.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let _ = ch.write_all(&reply).await;
                let _ = ch.close();
            });
        }
    });
    (
        Caller::new(qtalk::mux::Session::new(a, Default::default()), Json),
        raw,
    )
}

#[tokio::test]
async fn responder_closing_before_the_header() {
    let (caller, _raw) = raw_responder(Vec::new());
    let err = within(5, "call", caller.call::<_, String>("x", &()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Truncated), "{err}");
    // The session is fine: another call gets the same clean error.
    let err = within(5, "call", caller.call::<_, String>("x", &()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Truncated), "{err}");
}

#[tokio::test]
async fn responder_closing_mid_reply() {
    let mut reply = frame_of(b"{\"Error\":null,\"Continue\":false}\n");
    reply.extend_from_slice(&[0, 0, 0, 20]);
    reply.extend_from_slice(b"\"only part");
    let (caller, _raw) = raw_responder(reply);
    let err = within(5, "call", caller.call::<_, String>("x", &()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Truncated), "{err}");
}

#[tokio::test]
async fn responder_sending_an_oversized_reply_frame() {
    let mut reply = frame_of(b"{\"Error\":null,\"Continue\":false}\n");
    reply.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let (caller, _raw) = raw_responder(reply);
    let err = within(5, "call", caller.call::<_, String>("x", &()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameTooLarge {
                len: 0x7fff_ffff,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn responder_sending_an_undecodable_header() {
    let (caller, _raw) = raw_responder(frame_of(b"\xff\xfe garbage"));
    let err = within(5, "call", caller.call::<_, String>("x", &()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Codec(_)), "{err}");
}

#[tokio::test]
async fn bad_call_hook_sees_malformed_headers_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let options = qtalk::rpc::Options::builder()
        .on_bad_call(move |bad| {
            assert!(matches!(
                bad.error(),
                Error::Codec(_) | Error::FrameTooLarge { .. }
            ));
            s2.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let peer = Peer::with_options(
        qtalk::mux::Session::new(a, Default::default()),
        Json,
        options,
    );
    peer.respond();
    let raw = qtalk::mux::Session::new(b, Default::default());
    // A channel closed before any header is not a malformed call.
    let ch = raw.open().await.unwrap();
    drop(ch);
    // Garbage and an oversized header are.
    for bytes in [frame_of(b"{nope"), 0xffff_ffffu32.to_be_bytes().to_vec()] {
        let mut ch = raw.open().await.unwrap();
        ch.write_all(&bytes).await.unwrap();
        let (header, _) = read_response(&mut ch).await;
        assert!(header.error().is_some());
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn early_answer_waits_for_the_arguments_before_closing() {
    // Callers (the reference's included) write the header and the arguments separately; a
    // `not found` answered at once must leave the channel open until the arguments arrive.
    let (_peer, raw) = responder();
    let caller = Caller::new(raw.clone(), Json);
    let mut req = caller.request("nope").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    req.send(&["late", "args"]).await.unwrap();
    let err = within(5, "response", req.response()).await.unwrap_err();
    assert_eq!(err.remote_message(), Some("not found: /nope"));
    still_serving(&raw).await;
}

/// A channel that never sends its call header is let go once the header timeout passed (the
/// wait ends between the timeout and one and a half times it), while calls around it are
/// served, and a header that comes in time is answered.
#[tokio::test(start_paused = true)]
async fn a_channel_without_a_header_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_secs(10);
    let (_peer, raw) = responder_with(
        qtalk::rpc::Options::builder()
            .header_timeout(timeout)
            .build()
            .unwrap(),
    );

    let started = tokio::time::Instant::now();
    let mut silent = raw.open().await.unwrap();
    // A second channel sends its header late, but within the timeout: it is answered.
    let mut late = raw.open().await.unwrap();
    tokio::time::sleep(timeout * 9 / 10).await;
    still_serving(&raw).await;
    let mut call = BytesMut::new();
    encode_frame(&Json, &CallHeader::new("Upper"), &mut call).unwrap();
    encode_frame(&Json, &["late"], &mut call).unwrap();
    late.write_all(&call).await.unwrap();
    let (header, values) = read_response(&mut late).await;
    assert_eq!(header.error(), None);
    assert_eq!(values, vec![b"\"LATE\"\n".to_vec()]);

    // The silent one is closed by the responder, without an answer.
    let mut rest = Vec::new();
    within(60, "silent channel closed", silent.read_to_end(&mut rest))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(rest.is_empty());
    assert!(
        waited >= timeout && waited <= timeout * 3 / 2,
        "closed after {waited:?}"
    );
    still_serving(&raw).await;
}
