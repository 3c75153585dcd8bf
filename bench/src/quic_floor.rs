//! `quic-floor`: quinn-proto, the sans-IO QUIC core under quinn, driven by hand in one task per
//! process, with the application's work done inside that task. No task hop, no channel
//! between tasks, no lock: the least a round trip over QUIC can cost with quinn-proto on this
//! machine, whatever driver sits on top of it. Each round trip opens a bidirectional stream,
//! writes 9 bytes and finishes it; the server echoes them and finishes its side, as
//! `quinn` and `mux-quic` do. Calls only; the TLS and transport settings are those of our
//! QUIC sessions (`qtalk::mux::quic::{client_config, server_config}`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn_proto::{
    Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, Event, StreamEvent,
    StreamId,
};
use tokio::net::UdpSocket;

use qtalk::mux::{tls, Config};

use crate::stats::{calls_report, Latencies, Report};

const MSG: &[u8] = b"123456789";

/// The one socket, the endpoint and its connections of one process.
struct Driver {
    socket: UdpSocket,
    endpoint: Endpoint,
    conns: HashMap<ConnectionHandle, Connection>,
    recv: Vec<u8>,
    send: Vec<u8>,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Driver {
    fn new(socket: UdpSocket, endpoint: Endpoint) -> Self {
        Driver {
            socket,
            endpoint,
            conns: HashMap::new(),
            recv: vec![0; 64 * 1024],
            send: Vec::with_capacity(64 * 1024),
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
        }
    }

    /// Feeds every datagram waiting on the socket to the endpoint and its connections.
    fn receive(&mut self) {
        let now = Instant::now();
        while let Ok((n, from)) = self.socket.try_recv_from(&mut self.recv) {
            let data = BytesMut::from(&self.recv[..n]);
            self.send.clear();
            match self
                .endpoint
                .handle(now, from, None, None, data, &mut self.send)
            {
                Some(DatagramEvent::ConnectionEvent(h, ev)) => {
                    if let Some(c) = self.conns.get_mut(&h) {
                        c.handle_event(ev);
                    }
                }
                Some(DatagramEvent::NewConnection(incoming)) => {
                    let mut buf = Vec::new();
                    if let Ok((h, c)) = self.endpoint.accept(incoming, now, &mut buf, None) {
                        self.conns.insert(h, c);
                    }
                }
                Some(DatagramEvent::Response(t)) => {
                    let _ = self.socket.try_send_to(&self.send[..t.size], t.destination);
                }
                None => {}
            }
        }
    }

    /// Sends what the connections have to send; returns their earliest timer.
    fn transmit(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for (&h, c) in self.conns.iter_mut() {
            while let Some(ev) = c.poll_endpoint_events() {
                if let Some(back) = self.endpoint.handle_event(h, ev) {
                    c.handle_event(back);
                }
            }
            loop {
                self.send.clear();
                let Some(t) = c.poll_transmit(now, 1, &mut self.send) else {
                    break;
                };
                let _ = self.socket.try_send_to(&self.send[..t.size], t.destination);
            }
            if let Some(t) = c.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    /// Waits for a datagram or the earliest timer. The one tokio timer is only moved earlier
    /// when it must be: moving it later costs nothing, while moving it earlier than the
    /// deadline a parked I/O driver sleeps towards wakes that driver's thread.
    async fn wait(&mut self, next: Option<Instant>) {
        let target: tokio::time::Instant = next
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
            .into();
        if target < self.timer.deadline() {
            self.timer.as_mut().reset(target);
        }
        loop {
            tokio::select! {
                _ = self.socket.readable() => return,
                _ = self.timer.as_mut() => {
                    if self.timer.deadline() < target {
                        // Fired for an earlier deadline that no longer holds.
                        self.timer.as_mut().reset(target);
                        continue;
                    }
                    let now = Instant::now();
                    for c in self.conns.values_mut() {
                        if c.poll_timeout().is_some_and(|t| t <= now) {
                            c.handle_timeout(now);
                        }
                    }
                    self.timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                    return;
                }
            }
        }
    }
}

/// Binds the server's socket; returns it with its address.
pub async fn listen(addr: &str) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

/// Echoes every stream of every connection, in this one task.
pub async fn serve(socket: UdpSocket) -> std::io::Result<()> {
    let id = tls::self_signed(&["localhost"])?;
    let server =
        qtalk::mux::quic::server_config(tls::server_config(id.certs, id.key)?, &Config::default())?;
    let endpoint = Endpoint::new(
        Arc::new(EndpointConfig::default()),
        Some(Arc::new(server)),
        false,
        None,
    );
    let mut d = Driver::new(socket, endpoint);
    let mut echo = Vec::new();
    loop {
        d.receive();
        d.conns.retain(|_, c| !c.is_drained());
        for c in d.conns.values_mut() {
            let mut ready = Vec::new();
            while let Some(ev) = c.poll() {
                if let Event::Stream(StreamEvent::Readable { id }) = ev {
                    ready.push(id);
                }
            }
            while let Some(id) = c.streams().accept(Dir::Bi) {
                ready.push(id);
            }
            for id in ready {
                echo_stream(c, id, &mut echo);
            }
        }
        let next = d.transmit();
        d.wait(next).await;
    }
}

/// Echoes what `id` has received; finishes it once the peer has.
fn echo_stream(c: &mut Connection, id: StreamId, echo: &mut Vec<u8>) {
    echo.clear();
    let mut fin = false;
    let mut stream = c.recv_stream(id);
    let Ok(mut chunks) = stream.read(true) else {
        return;
    };
    loop {
        match chunks.next(usize::MAX) {
            Ok(Some(chunk)) => echo.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                fin = true;
                break;
            }
            Err(_) => break,
        }
    }
    let _ = chunks.finalize();
    if !echo.is_empty() {
        let _ = c.send_stream(id).write(echo);
    }
    if fin {
        let _ = c.send_stream(id).finish();
    }
}

/// `callers` round trips in flight at once, each on a new stream, for `warmup` and then
/// `secs`.
pub async fn calls(
    system: &str,
    addr: &str,
    callers: usize,
    secs: Duration,
    warmup: Duration,
) -> Result<Report, Box<dyn std::error::Error>> {
    let remote: SocketAddr = addr.parse()?;
    let client =
        qtalk::mux::quic::client_config(tls::insecure_client_config(), &Config::default())?;
    let socket = UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let mut endpoint = Endpoint::new(Arc::new(EndpointConfig::default()), None, false, None);
    let (h, conn) = endpoint.connect(Instant::now(), client, remote, "localhost")?;
    let mut d = Driver::new(socket, endpoint);
    d.conns.insert(h, conn);

    let mut connected = false;
    // Streams in flight: when each started and how many bytes came back.
    let mut flight: HashMap<StreamId, (Instant, usize)> = HashMap::new();
    let mut lat = Vec::with_capacity(1 << 16);
    // Once connected: when measuring starts and when it ends.
    let mut start = None::<(Instant, Instant)>;
    loop {
        d.receive();
        let c = d.conns.get_mut(&h).ok_or("connection gone")?;
        let now = Instant::now();
        while let Some(ev) = c.poll() {
            match ev {
                Event::Connected => {
                    connected = true;
                    start = Some((now + warmup, now + warmup + secs));
                }
                Event::Stream(StreamEvent::Readable { id }) => {
                    let Some((t0, got)) = flight.get_mut(&id) else {
                        continue;
                    };
                    if let Ok(mut chunks) = c.recv_stream(id).read(true) {
                        while let Ok(Some(chunk)) = chunks.next(usize::MAX) {
                            *got += chunk.bytes.len();
                        }
                        let _ = chunks.finalize();
                    }
                    if *got >= MSG.len() {
                        if start.is_some_and(|(from, _)| *t0 >= from) {
                            lat.push(t0.elapsed().as_nanos() as u64);
                        }
                        flight.remove(&id);
                    }
                }
                Event::ConnectionLost { reason } => return Err(reason.into()),
                _ => {}
            }
        }
        let Some((_, until)) = start else {
            let next = d.transmit();
            d.wait(next).await;
            continue;
        };
        if now >= until {
            if flight.is_empty() {
                break;
            }
        } else {
            while connected && flight.len() < callers {
                let Some(id) = c.streams().open(Dir::Bi) else {
                    break;
                };
                c.send_stream(id).write(MSG)?;
                c.send_stream(id).finish()?;
                flight.insert(id, (Instant::now(), 0));
            }
        }
        let next = d.transmit();
        d.wait(next).await;
    }
    let elapsed = secs;
    if let Some(c) = d.conns.get_mut(&h) {
        c.close(
            Instant::now(),
            0u32.into(),
            bytes::Bytes::from_static(b"done"),
        );
    }
    d.transmit();
    Ok(calls_report(
        system,
        "calls",
        callers,
        elapsed,
        Latencies(lat),
    ))
}
