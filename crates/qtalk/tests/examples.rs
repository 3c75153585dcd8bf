//! The examples run and print what the classic versions print.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        // `cargo test --test examples` does not build examples; build the one needed.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "qtalk", "--example", name]);
        if cfg!(feature = "quic") {
            build.args(["--features", "quic"]);
        }
        let ok = build.status().unwrap().success();
        assert!(ok, "building example {name}");
    }
    path
}

/// Kills the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server example on a free port; returns it with its address and the rest of its
/// stdout (one line per item, read in the background).
fn start_server(name: &str) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(example(name))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (Running(child), addr, rx)
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line == want => return,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("server never printed {want:?}");
}

#[test]
fn upper_client_and_server() {
    let (_server, addr, _lines) = start_server("upper_server");
    let out = run("upper_client", &[&addr]);
    assert_eq!(out, "HELLO WORLD\nremote: user error [/Error]\n");
}

#[test]
fn auth_client_and_server() {
    let (_server, addr, _lines) = start_server("auth_server");
    let out = run("auth_client", &[&addr]);
    assert_eq!(
        out,
        "without the token: remote: unauthenticated: no token in metadata \"authorization\"\n\
         with the token: HELLO\n"
    );
}

#[test]
fn state_client_and_server() {
    let (_server, addr, lines) = start_server("state_server");
    let alice = Command::new(example("state_client"))
        .args(["alice", &addr, "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_line(&lines, "alice joined");
    let bob = run("state_client", &["bob", &addr, "1"]);
    assert_eq!(bob, "users: alice, bob\n");
    let alice = alice.wait_with_output().unwrap();
    assert!(alice.status.success());
    assert_eq!(
        String::from_utf8(alice.stdout).unwrap(),
        "users: alice\nusers: alice, bob\nusers: alice\n"
    );

    // A client that vanishes without leaving is dropped at the next broadcast.
    let mut carol = Running(
        Command::new(example("state_client"))
            .args(["carol", &addr])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_line(&lines, "carol joined");
    let _ = carol.0.kill();
    let _ = carol.0.wait();
    let dave = run("state_client", &["dave", &addr, "1"]);
    assert!(dave.starts_with("users:"), "{dave}");
    wait_for_line(&lines, "dropping carol: callback failed");
}

#[test]
fn streaming_example() {
    assert_eq!(
        run("streaming", &[]),
        "count: 1\ncount: 2\ncount: 3\nsum: 10\nyou said: hi\nyou said: bye\n"
    );
}

#[test]
fn bytestream_proxy_example() {
    assert_eq!(
        run("bytestream_proxy", &[]),
        "echoed: hello through the tunnel\n"
    );
}

#[cfg(feature = "quic")]
#[test]
fn upper_over_quic_example() {
    assert_eq!(
        run("upper_quic", &[]),
        "HELLO WORLD\nremote: user error [/Error]\n"
    );
}

#[test]
fn typed_service_example() {
    assert_eq!(
        run("typed_service", &[]),
        "HELLO WORLD\nremote: user error\n"
    );
}

/// A running example with its stdout lines.
fn start(name: &str, args: &[&str]) -> (Running, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Running(child), rx)
}

/// The next line, within 20 s.
fn next_line(rx: &std::sync::mpsc::Receiver<String>) -> String {
    rx.recv_timeout(Duration::from_secs(20))
        .expect("a line within 20 s")
}

#[test]
fn tap_proxy_cuts_a_connection_on_a_keyword() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    // The upstream: echoes every connection, and says when one ended.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap().to_string();
    let (ended_tx, upstream_ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in upstream.incoming() {
            let Ok(mut conn) = conn else { break };
            let ended = ended_tx.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = ended.send(());
            });
        }
    });

    let (_proxy, proxy_out) = start(
        "tap_proxy",
        &[
            "proxy",
            "127.0.0.1:0",
            &upstream_addr,
            "127.0.0.1:0",
            "s3cr3t",
        ],
    );
    let clients = next_line(&proxy_out)
        .strip_prefix("clients on ")
        .unwrap()
        .to_string();
    let rpc = next_line(&proxy_out)
        .strip_prefix("rpc on ")
        .unwrap()
        .to_string();

    // A service with the wrong token is refused.
    let out = Command::new(example("tap_proxy"))
        .args(["service", &rpc, "guess", "DROP TABLE"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unauthenticated: invalid token"), "{err}");

    let (_service, service_out) = start("tap_proxy", &["service", &rpc, "s3cr3t", "DROP TABLE"]);
    assert_eq!(next_line(&service_out), "tapping");
    assert_eq!(next_line(&proxy_out), "tap registered");

    // An innocent connection goes through, teed.
    let mut good = TcpStream::connect(&clients).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    good.write_all(b"SELECT 1;\n").unwrap();
    let mut back = [0u8; 10];
    good.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"SELECT 1;\n");
    assert!(next_line(&service_out).starts_with("tapped connection 1 from 127.0.0.1:"));

    // The keyword, split over two writes: the service cuts the connection.
    let mut bad = TcpStream::connect(&clients).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    bad.write_all(b"SELECT 2; DROP ").unwrap();
    let mut first = [0u8; 15];
    bad.read_exact(&mut first).unwrap();
    assert!(next_line(&service_out).starts_with("tapped connection 2 from "));
    bad.write_all(b"TABLE users;\n").unwrap();
    assert_eq!(next_line(&service_out), "cutting connection 2");
    assert_eq!(
        next_line(&proxy_out),
        "cut connection 2: saw \"DROP TABLE\""
    );
    // The client's connection ends (whatever of the echo got through before), and so does
    // the proxy's connection upstream.
    let mut rest = Vec::new();
    let end = bad.read_to_end(&mut rest);
    assert!(end.is_ok() || end.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    upstream_ended
        .recv_timeout(Duration::from_secs(20))
        .expect("the upstream connection closed");

    // The other connection is untouched.
    good.write_all(b"SELECT 3;\n").unwrap();
    good.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"SELECT 3;\n");
}
