//! A peer that writes as qtalk-js does never stalls.
//!
//! qtalk-js writes a call header and its arguments (two small writes), waits for the response
//! header, and then writes a long buffer one max packet at a time, waiting for a WINDOW_ADJUST
//! after every packet, whatever window it has left. It returns window after every read. The
//! peer here speaks qmux frames by hand with exactly that behaviour, over TCP, to a qtalk
//! server whose `Bytes` handler relays to a callback on the caller (as the interop service
//! does): the bytes go up the call, down the callback, back up from the callback's echo and
//! down the call, each way through our session, in 1 MiB and 16 MiB writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use qtalk::codec::Json;
use qtalk::mux::qtalk_mux_proto::Frame;
use qtalk::rpc::{handler_fn, Call, RespondMux, Responder, Server};
use qtalk::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// qtalk-js's window and max packet (`channelWindowSize`, `channelMaxPacket`).
const JS_MAX_PACKET: u32 = 1 << 24;
const JS_WINDOW: u32 = 64 * JS_MAX_PACKET;

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("stalled: {what}"))
}

/// Deterministic payload: byte k of stream `seed`.
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|k| ((k + 7 * seed) % 251) as u8).collect()
}

#[derive(Default)]
struct JsChannel {
    remote_id: u32,
    /// What we may still send.
    remote_window: u64,
    /// The peer's max packet.
    remote_max: u32,
    /// WINDOW_ADJUSTs received so far (a write waits for the next one after each packet).
    adjusts: u64,
    confirmed: bool,
    data: BytesMut,
    eof: bool,
    closed: bool,
}

#[derive(Default)]
struct JsState {
    channels: HashMap<u32, JsChannel>,
    incoming: VecDeque<u32>,
    next_id: u32,
    ended: bool,
}

/// The qmux side of qtalk-js, by hand: its windows, and its way of writing and reading.
#[derive(Clone)]
struct JsPeer {
    w: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    state: Arc<Mutex<JsState>>,
    changed: Arc<Notify>,
}

impl JsPeer {
    fn new(io: tokio::net::TcpStream) -> JsPeer {
        io.set_nodelay(true).unwrap();
        let (mut r, w) = io.into_split();
        let peer = JsPeer {
            w: Arc::new(tokio::sync::Mutex::new(w)),
            state: Arc::default(),
            changed: Arc::default(),
        };
        let p = peer.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                while let Some(f) = Frame::decode(&mut buf, u32::MAX).expect("valid frames") {
                    p.handle(f).await;
                }
                match r.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            p.state.lock().unwrap().ended = true;
            p.changed.notify_waiters();
        });
        peer
    }

    async fn send(&self, f: Frame) {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        let _ = self.w.lock().await.write_all(&b).await;
    }

    async fn handle(&self, f: Frame) {
        let reply = {
            let mut st = self.state.lock().unwrap();
            match f {
                Frame::Open {
                    sender_id,
                    window,
                    max_packet,
                } => {
                    let id = st.next_id;
                    st.next_id += 1;
                    st.channels.insert(
                        id,
                        JsChannel {
                            remote_id: sender_id,
                            remote_window: window.into(),
                            remote_max: max_packet,
                            confirmed: true,
                            ..Default::default()
                        },
                    );
                    st.incoming.push_back(id);
                    Some(Frame::OpenConfirm {
                        recipient_id: sender_id,
                        sender_id: id,
                        window: JS_WINDOW,
                        max_packet: JS_MAX_PACKET,
                    })
                }
                Frame::OpenConfirm {
                    recipient_id,
                    sender_id,
                    window,
                    max_packet,
                } => {
                    let ch = st.channels.get_mut(&recipient_id).expect("our channel");
                    ch.remote_id = sender_id;
                    ch.remote_window += u64::from(window);
                    ch.remote_max = max_packet;
                    ch.confirmed = true;
                    None
                }
                Frame::WindowAdjust {
                    recipient_id,
                    bytes,
                } => {
                    let ch = st.channels.get_mut(&recipient_id).expect("our channel");
                    ch.remote_window += u64::from(bytes);
                    ch.adjusts += 1;
                    None
                }
                Frame::Data {
                    recipient_id,
                    payload,
                } => {
                    let ch = st.channels.get_mut(&recipient_id).expect("our channel");
                    ch.data.extend_from_slice(&payload);
                    None
                }
                Frame::Eof { recipient_id } => {
                    st.channels.get_mut(&recipient_id).expect("our channel").eof = true;
                    None
                }
                Frame::Close { recipient_id } => {
                    let ch = st.channels.get_mut(&recipient_id).expect("our channel");
                    let answer = !ch.closed;
                    ch.closed = true;
                    ch.eof = true;
                    answer.then_some(Frame::Close {
                        recipient_id: ch.remote_id,
                    })
                }
                other => panic!("unexpected {other:?}"),
            }
        };
        if let Some(f) = reply {
            self.send(f).await;
        }
        self.changed.notify_waiters();
    }

    /// Waits until `ready` holds of the state.
    async fn wait_for<T>(&self, mut ready: impl FnMut(&mut JsState) -> Option<T>) -> T {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap();
                if let Some(v) = ready(&mut st) {
                    return v;
                }
                assert!(!st.ended, "the session ended");
            }
            changed.await;
        }
    }

    async fn open(&self) -> u32 {
        let id = {
            let mut st = self.state.lock().unwrap();
            let id = st.next_id;
            st.next_id += 1;
            st.channels.insert(id, JsChannel::default());
            id
        };
        self.send(Frame::Open {
            sender_id: id,
            window: JS_WINDOW,
            max_packet: JS_MAX_PACKET,
        })
        .await;
        self.wait_for(|st| st.channels[&id].confirmed.then_some(()))
            .await;
        id
    }

    async fn accept(&self) -> u32 {
        self.wait_for(|st| st.incoming.pop_front()).await
    }

    /// qtalk-js's `Channel.write`: one packet of at most the peer's max packet, then (if more
    /// is left) a wait for the next WINDOW_ADJUST, even with window left.
    async fn write(&self, id: u32, mut data: &[u8]) {
        while !data.is_empty() {
            let (remote, n, adjusts) = self
                .wait_for(|st| {
                    let ch = st.channels.get_mut(&id).expect("open channel");
                    let n = (ch.remote_max as usize)
                        .min(data.len())
                        .min(ch.remote_window as usize);
                    if n == 0 {
                        return None;
                    }
                    ch.remote_window -= n as u64;
                    Some((ch.remote_id, n, ch.adjusts))
                })
                .await;
            self.send(Frame::Data {
                recipient_id: remote,
                payload: bytes::Bytes::copy_from_slice(&data[..n]),
            })
            .await;
            data = &data[n..];
            if !data.is_empty() {
                self.wait_for(|st| (st.channels[&id].adjusts > adjusts).then_some(()))
                    .await;
            }
        }
    }

    /// qtalk-js's `Channel.read`: what is buffered, up to `max`, then a WINDOW_ADJUST of what
    /// was read. Empty at end of stream.
    async fn read(&self, id: u32, max: usize) -> Vec<u8> {
        let (remote, got) = self
            .wait_for(|st| {
                let ch = st.channels.get_mut(&id).expect("open channel");
                if ch.data.is_empty() {
                    return ch.eof.then(|| (ch.remote_id, Vec::new()));
                }
                let n = ch.data.len().min(max);
                Some((ch.remote_id, ch.data.split_to(n).to_vec()))
            })
            .await;
        if !got.is_empty() {
            self.send(Frame::WindowAdjust {
                recipient_id: remote,
                bytes: got.len() as u32,
            })
            .await;
        }
        got
    }

    async fn read_exact(&self, id: u32, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let got = self.read(id, n - out.len()).await;
            assert!(!got.is_empty(), "end of stream after {} of {n}", out.len());
            out.extend_from_slice(&got);
        }
        out
    }

    /// One rpc frame written as qtalk-js's `FrameEncoder` does (one write).
    async fn write_value(&self, id: u32, json: &str) {
        let mut b = (json.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        self.write(id, &b).await;
    }

    /// One rpc frame's JSON text (compared as text: the server writes Go's format).
    async fn read_value(&self, id: u32) -> String {
        let len = self.read_exact(id, 4).await;
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        String::from_utf8(self.read_exact(id, len).await).unwrap()
    }

    async fn close_write(&self, id: u32) {
        let remote = self.state.lock().unwrap().channels[&id].remote_id;
        self.send(Frame::Eof {
            recipient_id: remote,
        })
        .await;
    }
}

/// The interop service's `Bytes`: calls `Bytes` back on the caller with the same argument,
/// continues with its reply, then relays raw bytes both ways.
fn relay() -> RespondMux {
    let mux = RespondMux::new();
    mux.handle(
        "Bytes",
        handler_fn(|r: Responder, mut call: Call| async move {
            let arg: Value = call.receive().await.expect("arguments");
            let caller = call.caller().clone();
            let mut upstream = caller.call_raw("Bytes", &arg).await.expect("callback");
            let ret: Value = upstream.receive().await.expect("callback's reply");
            let mut down = r.continue_with(&ret).await.expect("continue");
            let (mut up_r, mut up_w) = tokio::io::split(upstream);
            let forward = async {
                pump(&mut call, &mut up_w).await;
                up_w.shutdown().await.unwrap();
            };
            let back = async {
                pump(&mut up_r, &mut down).await;
                down.close_write().unwrap();
            };
            tokio::join!(forward, back);
        }),
    )
    .unwrap();
    mux
}

async fn pump<R, W>(from: &mut R, to: &mut W)
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = from.read(&mut buf).await.unwrap();
        if n == 0 {
            return;
        }
        to.write_all(&buf[..n]).await.unwrap();
    }
}

/// The JS side's responder (qtalk-js's `Respond` on every channel it accepts): `Bytes`
/// answers with its argument and echoes what comes, writing each piece read as qtalk-js
/// writes. Channels opened ahead of need (our caller's spare channels) just wait.
async fn js_respond(js: JsPeer) {
    loop {
        let ch = js.accept().await;
        let js = js.clone();
        tokio::spawn(async move {
            let header = js.read_value(ch).await;
            assert_eq!(header, "{\"Selector\":\"Bytes\"}\n");
            let arg = js.read_value(ch).await;
            js.write_value(ch, "{\"Error\":null,\"Continue\":true}\n")
                .await;
            js.write_value(ch, &arg).await;
            loop {
                let got = js.read(ch, 1 << 20).await;
                if got.is_empty() {
                    break;
                }
                js.write(ch, &got).await;
            }
            js.close_write(ch).await;
        });
    }
}

/// One call of `Bytes` from the JS side: `len` bytes up in one write, read back as they come.
async fn js_call(js: &JsPeer, len: usize) {
    let ch = js.open().await;
    js.write_value(ch, "{\"Selector\":\"Bytes\"}\n").await;
    js.write_value(ch, "\"payload\"\n").await;
    let header = js.read_value(ch).await;
    assert!(header.contains("\"Continue\":true"), "{}", header);
    assert_eq!(js.read_value(ch).await, "\"payload\"\n");
    let sent = pattern(len, len);
    let reader = {
        let js = js.clone();
        tokio::spawn(async move { js.read_exact(ch, len).await })
    };
    js.write(ch, &sent).await;
    js.close_write(ch).await;
    let back = reader.await.unwrap();
    assert!(back == sent, "the relayed bytes differ");
    assert!(js.read(ch, 1).await.is_empty(), "end of stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_writer_through_the_bytes_relay_never_stalls() {
    let listener = qtalk::mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(relay(), Json);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve(listener).await })
    };
    let js = JsPeer::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let responder = tokio::spawn(js_respond(js.clone()));
    for len in [1 << 20, 16 << 20] {
        within(
            60,
            &format!("{len} bytes through the relay"),
            js_call(&js, len),
        )
        .await;
    }
    responder.abort();
    serving.abort();
}

/// The reader of the data is ours and reads in small pieces: the window still goes back after
/// every packet the JS writer sends, after a header of any size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_writer_after_any_small_writes_never_stalls() {
    for first in [1usize, 40, 4096, 200_000, 300_000, 1 << 20] {
        within(
            60,
            &format!("4 MiB after {first} bytes"),
            small_then_big(first),
        )
        .await;
    }
}

/// `first` bytes in writes of half a max packet (each one packet: qtalk-js does not wait after
/// them), then 4 MiB in one write, read by a channel of ours.
async fn small_then_big(first: usize) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
    let session = qtalk::mux::transport::over_tcp(server.unwrap().0, Default::default());
    let js = JsPeer::new(client.unwrap());
    let (ch, ours) = tokio::join!(js.open(), session.accept());
    let mut ours = ours.unwrap();
    let max = js.state.lock().unwrap().channels[&ch].remote_max as usize;
    let small = pattern(first, 1);
    let big = pattern(4 << 20, 2);
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; first + (4 << 20)];
        ours.read_exact(&mut got).await.unwrap();
        got
    });
    for piece in small.chunks(max / 2) {
        js.write(ch, piece).await;
    }
    js.write(ch, &big).await;
    let got = reader.await.unwrap();
    assert!(got[..first] == small[..] && got[first..] == big[..]);
    session.close();
}
