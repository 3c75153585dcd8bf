//! RPC over QUIC: the same calls as over qmux, with each call on its own QUIC stream.

use std::time::Duration;

use qtalk::codec::{Cbor, Json};
use qtalk::rpc::{func, handler_fn, Call, Error, Peer, RespondMux, Responder, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A QUIC listener with a self-signed certificate, and client settings that trust it.
async fn listener() -> (qtalk::mux::Listener, qtalk::mux::tls::rustls::ClientConfig) {
    let id = qtalk::mux::tls::self_signed(&["localhost"]).unwrap();
    let server_tls = qtalk::mux::tls::server_config(id.certs.clone(), id.key).unwrap();
    let l = qtalk::mux::Listener::bind_quic("127.0.0.1:0", server_tls, Default::default())
        .await
        .unwrap();
    (l, qtalk::mux::tls::client_config(id.certs).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upper_and_error_over_quic() {
    let mux = RespondMux::new();
    mux.handle(
        "Upper",
        func(|_c: Call, (text,): (String,)| async move { Ok::<_, String>(text.to_uppercase()) }),
    )
    .unwrap();
    mux.handle(
        "Error",
        func(|c: Call, (text,): (String,)| async move {
            Err::<(), _>(format!("{text} [{}]", c.selector()))
        }),
    )
    .unwrap();
    let (l, client_tls) = listener().await;
    let addr = l.local_addr().unwrap();
    let server = Server::new(mux, Json);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve(l).await })
    };

    let session = qtalk::mux::quic::connect(addr, "localhost", client_tls, Default::default())
        .await
        .unwrap();
    let caller = qtalk::rpc::Caller::new(session.clone(), Json);
    let reply: String = within("Upper", caller.call("Upper", &["hello world"]))
        .await
        .unwrap();
    assert_eq!(reply, "HELLO WORLD");
    let err = within("Error", caller.call::<_, ()>("Error", &["user error"]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Remote(m) if m == "user error [/Error]"),
        "{err}"
    );
    let err = within("missing", caller.call::<_, ()>("Missing", &()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");

    // Many calls at once, each on its own stream.
    let calls = (0..100).map(|i| {
        let caller = caller.clone();
        async move {
            let r: String = caller.call("Upper", &[format!("x{i}")]).await.unwrap();
            assert_eq!(r, format!("X{i}"));
        }
    });
    within("100 calls", futures_util::future::join_all(calls)).await;

    session.close();
    server.shutdown(Duration::from_secs(1)).await;
    serving.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_streams_and_continued_bytes_over_quic() {
    let (l, client_tls) = listener().await;
    let addr = l.local_addr().unwrap();
    let server_side = tokio::spawn(async move {
        let session = l.accept().await.unwrap();
        let peer = Peer::new(session, Cbor);
        // Calls back its caller before answering.
        peer.handle(
            "Greet",
            handler_fn(|r: Responder, mut call: Call| async move {
                let name: String = call.receive().await.unwrap();
                let title: String = call.caller().call("Title", &name).await.unwrap();
                let _ = r.ret(&format!("hello, {title}")).await;
            }),
        )
        .unwrap();
        // Continues into a raw byte stream and echoes it upper-cased.
        peer.handle(
            "Shout",
            handler_fn(|r: Responder, mut call: Call| async move {
                let _: Option<()> = call.receive().await.unwrap();
                let Ok(mut out) = r.continue_with(&()).await else {
                    return;
                };
                let mut buf = Vec::new();
                call.read_to_end(&mut buf).await.unwrap();
                out.write_all(&buf.to_ascii_uppercase()).await.unwrap();
                out.shutdown().await.unwrap();
            }),
        )
        .unwrap();
        peer.respond();
        peer.session().wait().await
    });

    let session = qtalk::mux::quic::connect(addr, "localhost", client_tls, Default::default())
        .await
        .unwrap();
    let me = Peer::new(session.clone(), Cbor);
    me.handle(
        "Title",
        handler_fn(|r: Responder, mut call: Call| async move {
            let name: String = call.receive().await.unwrap();
            let _ = r.ret(&format!("Dr. {name}")).await;
        }),
    )
    .unwrap();
    me.respond();
    let reply: String = within("Greet", me.call("Greet", &"Who")).await.unwrap();
    assert_eq!(reply, "hello, Dr. Who");

    let resp = within("Shout", me.caller().call_raw("Shout", &()))
        .await
        .unwrap();
    assert!(resp.is_continued());
    let mut stream = resp;
    // The value the handler continued with comes first, then raw bytes.
    let _: Option<()> = within("continue value", stream.receive()).await.unwrap();
    stream.write_all(&vec![b'q'; 200_000]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    within("echo", stream.read_to_end(&mut back)).await.unwrap();
    assert!(
        back == vec![b'Q'; 200_000],
        "echo differs ({} bytes)",
        back.len()
    );

    me.close();
    let end = within("server end", server_side).await.unwrap();
    assert!(matches!(end, qtalk::mux::Error::PeerClosed), "{end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_giving_up_cancels_the_handler_over_quic() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mux = RespondMux::new();
    mux.handle(
        "slow",
        handler_fn(move |r: Responder, mut call: Call| {
            let tx = tx.clone();
            async move {
                let _: qtalk::Value = call.receive().await.unwrap();
                call.cancelled().await;
                let _ = tx.send(r.ret(&"late").await.is_err());
            }
        }),
    )
    .unwrap();
    let (l, client_tls) = listener().await;
    let addr = l.local_addr().unwrap();
    let server = Server::new(mux, Json);
    let serving = {
        let server = server.clone();
        tokio::spawn(async move { server.serve(l).await })
    };
    let session = qtalk::mux::quic::connect(addr, "localhost", client_tls, Default::default())
        .await
        .unwrap();
    let caller = qtalk::rpc::Caller::new(session.clone(), Json);
    // Abandoned without a deadline on the wire: only the stream's end tells the handler.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        caller.call::<_, String>("slow", &()),
    )
    .await;
    assert!(abandoned.is_err());
    // The handler saw the cancellation (it waits for nothing else); answering then failed.
    assert!(within("handler cancelled", rx.recv()).await.unwrap());
    session.close();
    server.shutdown(Duration::from_secs(1)).await;
    serving.abort();
}
