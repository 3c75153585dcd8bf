//! Ready-made transports: TCP, Unix sockets, WebSocket ([`ws`]), this process's stdio, and a
//! child process's stdin/stdout. Any other `AsyncRead + AsyncWrite` stream works with
//! [`Session::new`].

use std::io;
use std::path::Path;
use std::process::Stdio;

use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::process::{Child, Command};

use crate::conn_info::tcp_info;
use crate::{Config, ConnectionInfo, PeerCredentials, Session, TransportKind};

#[cfg(feature = "websocket")]
pub mod ws;
#[cfg(all(feature = "websocket", feature = "tls"))]
pub use ws::connect_wss;
#[cfg(feature = "websocket")]
pub use ws::{connect_ws, over_websocket};

/// Connects to a TCP address and runs a session over the connection.
pub async fn connect_tcp<A: ToSocketAddrs>(addr: A, config: Config) -> io::Result<Session> {
    let stream = TcpStream::connect(addr).await?;
    Ok(over_tcp(stream, config))
}

/// Connects to a TCP address, performs a TLS handshake with these settings (the server's
/// certificate must name `server_name`; see [`crate::tls`]) and runs a session inside TLS.
/// Not in the reference, whose peers speak qmux on plain TCP.
#[cfg(feature = "tls")]
pub async fn connect_tls<A: ToSocketAddrs>(
    addr: A,
    server_name: &str,
    tls: rustls::ClientConfig,
    config: Config,
) -> io::Result<Session> {
    let stream = TcpStream::connect(addr).await?;
    tune_tcp(&stream, &config);
    let info = tcp_info(TransportKind::Tls, &stream);
    let stream = crate::tls::client_handshake(stream, server_name, tls).await?;
    let info = info.with_tls(crate::conn_info::tls_info(
        stream.get_ref().1,
        Some(server_name),
    ));
    Ok(Session::new(stream, config.copying_transport()).with_connection_info(info))
}

/// Sets up a TCP connection for a session: Nagle off (the session batches), and
/// `TCP_NOTSENT_LOWAT` as configured where the platform has it. Failures leave the system's
/// settings.
pub(crate) fn tune_tcp(stream: &TcpStream, config: &Config) {
    let _ = stream.set_nodelay(true);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if config.tcp_notsent_lowat > 0 {
        let _ = socket2::SockRef::from(stream).set_tcp_notsent_lowat(config.tcp_notsent_lowat);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = config;
}

/// Runs a session over an established TCP connection (Nagle disabled, the session batches;
/// `TCP_NOTSENT_LOWAT` from [`ConfigBuilder::tcp_notsent_lowat`](crate::ConfigBuilder::tcp_notsent_lowat)).
pub fn over_tcp(stream: TcpStream, config: Config) -> Session {
    tune_tcp(&stream, &config);
    let info = tcp_info(TransportKind::Tcp, &stream);
    let (r, w) = stream.into_split();
    Session::from_split(r, w, config).with_connection_info(info)
}

/// Connects to a Unix socket and runs a session over the connection.
#[cfg(unix)]
pub async fn connect_unix<P: AsRef<Path>>(path: P, config: Config) -> io::Result<Session> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    Ok(over_unix(stream, config))
}

/// Runs a session over an established Unix socket connection; the peer's credentials (as
/// the kernel reports them) are in its [`ConnectionInfo`].
#[cfg(unix)]
pub fn over_unix(stream: tokio::net::UnixStream, config: Config) -> Session {
    let info = crate::conn_info::unix_info(&stream);
    let (r, w) = stream.into_split();
    Session::from_split(r, w, config).with_connection_info(info)
}

/// Runs a session over this process's stdin (incoming) and stdout (outgoing). Nothing else may
/// write to stdout while it runs.
///
/// When stdin and stdout are pipes (as for a spawned child), they are switched to non-blocking
/// mode and driven by the reactor directly; otherwise tokio's blocking-pool stdio is used.
pub fn stdio(config: Config) -> Session {
    let info = ConnectionInfo::new(TransportKind::Stdio);
    #[cfg(unix)]
    if let Some((r, w)) = stdio_pipes() {
        return Session::from_split(r, w, config).with_connection_info(info);
    }
    Session::from_split(tokio::io::stdin(), tokio::io::stdout(), config).with_connection_info(info)
}

/// Stdin and stdout as non-blocking pipes, when both are pipes.
#[cfg(unix)]
fn stdio_pipes() -> Option<(
    tokio::net::unix::pipe::Receiver,
    tokio::net::unix::pipe::Sender,
)> {
    use std::os::fd::AsFd;
    let input = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let output = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let r = tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(input)).ok()?;
    let w = tokio::net::unix::pipe::Sender::from_file(std::fs::File::from(output)).ok()?;
    Some((r, w))
}

/// Starts `sh -c <command>` and runs a session over its stdin and stdout; its stderr is
/// inherited. The child is killed when the returned [`Child`] is dropped.
pub fn spawn(command: &str, config: Config) -> io::Result<(Session, Child)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let info = child_info(&child);
    let session = Session::from_split(stdout, stdin, config).with_connection_info(info);
    Ok((session, child))
}

/// Starts `command` with piped stdin and stdout and runs a session over them; stderr is left
/// as configured on `command`. The child is killed when the returned [`Child`] is dropped.
pub fn spawn_command(mut command: Command, config: Config) -> io::Result<(Session, Child)> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let session = over_child(&mut child, config)?;
    Ok((session, child))
}

/// Runs a session over a spawned child's piped stdout (incoming) and stdin (outgoing).
pub fn over_child(child: &mut Child, config: Config) -> io::Result<Session> {
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("stdin not piped"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout not piped"))?;
    let info = child_info(child);
    Ok(Session::from_split(stdout, stdin, config).with_connection_info(info))
}

/// A child process's connection: its process id.
fn child_info(child: &Child) -> ConnectionInfo {
    ConnectionInfo::new(TransportKind::Child).with_peer_credentials(PeerCredentials::new(
        child.id(),
        None,
        None,
    ))
}
