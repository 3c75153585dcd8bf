//! The `qtalk` command and the Go reference certifying each other: the reference's check
//! against our `qtalk interop`, our `qtalk check` against the reference's interop service over
//! stdio, TCP, WebSocket and QUIC, `qtalk call` and `qtalk bench` against the Go peer, with both
//! codecs.
//!
//! The Go peer is the program in `interop/go`; `scripts/test.sh` builds it and exports its path
//! as `QTALK_GO_PEER`. Without it these tests print a SKIPPED notice and pass (or fail, with `QTALK_REQUIRE_GO_PEER=1`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");

fn go_peer() -> Option<String> {
    // `scripts/test.sh` tallies ran/skipped through QTALK_GO_PEER_TALLY; with
    // QTALK_REQUIRE_GO_PEER=1 a missing peer fails the test instead of skipping it.
    let found = std::env::var("QTALK_GO_PEER")
        .ok()
        .filter(|p| std::path::Path::new(p).exists());
    if found.is_none() && std::env::var("QTALK_REQUIRE_GO_PEER").as_deref() == Ok("1") {
        panic!("QTALK_REQUIRE_GO_PEER=1 but QTALK_GO_PEER names no built Go peer");
    }
    if let Ok(tally) = std::env::var("QTALK_GO_PEER_TALLY") {
        use std::io::Write;
        let verdict = if found.is_some() { "ran" } else { "skipped" };
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(tally);
        if let Ok(mut f) = file {
            // One write per line: tests run in parallel.
            let _ = f.write_all(format!("{verdict} {test}\n").as_bytes());
        }
    }
    if found.is_none() {
        eprintln!(
            "SKIPPED: Go reference peer not available (QTALK_GO_PEER unset); run scripts/test.sh"
        );
    }
    found
}

/// Runs `cmd` to completion within `secs` seconds.
fn run(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let e = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {secs}s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The check lines the reference prints (tests/vectors/cli_check/*_check_output.txt).
fn assert_reference_report(stdout: &str) {
    let expected = [
        "Error: test",
        "Error: not found: /BadSelector",
        "Unary: 100 100",
        "Unary: true true",
        "Unary: hello hello",
        "Unary: map[foo:bar] map[foo:bar]",
        "Unary: [1 2 3] [1 2 3]",
        "Stream: 100",
        "Stream: true",
        "Stream: hello",
        "Stream: map[foo:bar]",
        "Stream: [1 2 3]",
        "Bytes: 1",
        "Bytes: 1024",
        "Bytes: 1048576",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    for want in expected {
        assert!(lines.contains(&want), "missing {want:?} in:\n{stdout}");
    }
}

/// A Go peer listening on TCP (on WebSocket when `args` has `-ws`, on QUIC when it has
/// `-quic`); returns it with its address.
fn go_listening(peer: &str, args: &[&str], codec: &str) -> (Child, String) {
    let mut child = Command::new(peer)
        .args(args)
        .args(["-listen", "127.0.0.1:0"])
        .env("QTALK_CODEC", codec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("Go peer printed no address");
        if let Some(a) = line.strip_prefix("listening ") {
            break a.trim().to_string();
        }
    };
    (child, addr)
}

/// Asserts that a check run succeeded and printed the reference's report.
fn assert_check_passed(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_reference_report(&text(&out.stdout));
}

/// Our `qtalk check` (with `extra` options) against the Go interop service listening with
/// `go_flags`, reached at `scheme://ADDR`, with both codecs.
fn our_check_against_go_listening(peer: &str, go_flags: &[&str], scheme: &str, extra: &[&str]) {
    for codec in ["cbor", "json"] {
        let mut go_args = vec!["-mode", "interop"];
        go_args.extend_from_slice(go_flags);
        let (mut go, addr) = go_listening(peer, &go_args, codec);
        let mut cmd = Command::new(QTALK);
        cmd.arg("check")
            .args(extra)
            .args(["--connect", &format!("{scheme}://{addr}")])
            .env("QTALK_CODEC", codec);
        let out = run(cmd, 60);
        let _ = go.kill();
        let _ = go.wait();
        assert_check_passed(&out, &format!("{codec}: qtalk check --connect {scheme}://"));
    }
}

/// The Go reference's check dialing (with `go_flag`) our `qtalk interop` listening on
/// `scheme://127.0.0.1:0`, with both codecs.
fn go_check_against_ours_listening(peer: &str, scheme: &str, go_flag: &str) {
    for codec in ["cbor", "json"] {
        let (mut ours, addr) = ours_listening(&format!("{scheme}://127.0.0.1:0"), codec);
        let mut cmd = Command::new(peer);
        cmd.args(["-mode", "check", go_flag, "-dial", &addr])
            .env("QTALK_CODEC", codec);
        let out = run(cmd, 60);
        let _ = ours.kill();
        let _ = ours.wait();
        assert_check_passed(&out, &format!("{codec}: Go check {go_flag}"));
    }
}

#[test]
fn reference_check_passes_against_our_interop_over_stdio() {
    let Some(peer) = go_peer() else { return };
    for codec in ["cbor", "json"] {
        let mut cmd = Command::new(&peer);
        cmd.args(["-mode", "check", "-cmd", &format!("{QTALK} interop")])
            .env("QTALK_CODEC", codec);
        let out = run(cmd, 60);
        assert!(
            out.status.success(),
            "{codec}: Go check failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_reference_report(&text(&out.stdout));
    }
}

#[test]
fn our_check_passes_against_the_reference_interop_over_stdio() {
    let Some(peer) = go_peer() else { return };
    for codec in ["cbor", "json"] {
        let mut cmd = Command::new(QTALK);
        cmd.args(["check", &format!("{peer} -mode interop")])
            .env("QTALK_CODEC", codec);
        let out = run(cmd, 60);
        assert!(
            out.status.success(),
            "{codec}: qtalk check failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert_reference_report(&text(&out.stdout));
    }
}

#[test]
fn our_check_passes_against_the_reference_interop_over_tcp() {
    let Some(peer) = go_peer() else { return };
    our_check_against_go_listening(&peer, &[], "tcp", &[]);
}

#[test]
fn our_check_passes_against_the_reference_interop_over_websocket() {
    let Some(peer) = go_peer() else { return };
    our_check_against_go_listening(&peer, &["-ws"], "ws", &[]);
}

#[test]
fn reference_check_passes_against_our_interop_listening_on_websocket() {
    let Some(peer) = go_peer() else { return };
    go_check_against_ours_listening(&peer, "ws", "-ws");
}

#[test]
fn our_check_passes_against_the_reference_interop_over_quic() {
    let Some(peer) = go_peer() else { return };
    our_check_against_go_listening(&peer, &["-quic"], "quic", &["--insecure"]);
}

/// Our `qtalk interop --listen URL` (`ws://` or `quic://` with port 0); returns it with the
/// `HOST:PORT` it printed. Its first stderr line is read within 20 s.
fn ours_listening(url: &str, codec: &str) -> (Child, String) {
    let mut ours = Command::new(QTALK)
        .args(["interop", "--listen", url])
        .env("QTALK_CODEC", codec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scheme = url.split("://").next().unwrap();
    let prefix = format!("listening on {scheme}://");
    let stderr = ours.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(line) => line,
        Err(e) => {
            let _ = ours.kill();
            let _ = ours.wait();
            panic!("qtalk interop --listen {url} printed nothing: {e}");
        }
    };
    let Some(addr) = line.strip_prefix(&prefix) else {
        let _ = ours.kill();
        let _ = ours.wait();
        panic!("unexpected first line: {line}");
    };
    (ours, addr.trim().to_string())
}

#[test]
fn reference_check_passes_against_our_interop_listening_on_quic() {
    let Some(peer) = go_peer() else { return };
    go_check_against_ours_listening(&peer, "quic", "-quic");
}

#[test]
fn our_check_passes_against_our_interop_with_both_codecs() {
    for codec in ["cbor", "json"] {
        let mut cmd = Command::new(QTALK);
        cmd.arg("check").env("QTALK_CODEC", codec);
        let out = run(cmd, 60);
        assert!(out.status.success(), "{codec}: {}", text(&out.stderr));
        assert_reference_report(&text(&out.stdout));
    }
}

#[test]
fn qtalk_call_against_the_go_peer() {
    let Some(peer) = go_peer() else { return };
    for codec in ["json", "cbor"] {
        let (mut go, addr) = go_listening(&peer, &["-mode", "rpc-serve", "-codec", codec], codec);
        let mut cmd = Command::new(QTALK);
        cmd.args([
            "call",
            "--codec",
            codec,
            &format!("tcp://{addr}/Upper"),
            "\"hello\"",
        ]);
        let out = run(cmd, 30);
        let _ = go.kill();
        let _ = go.wait();
        assert!(out.status.success(), "{codec}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "\"HELLO\"");
    }
}

#[test]
fn qtalk_call_against_the_go_peer_over_websocket() {
    let Some(peer) = go_peer() else { return };
    let (mut go, addr) = go_listening(
        &peer,
        &["-mode", "rpc-serve", "-codec", "json", "-ws"],
        "json",
    );
    let mut cmd = Command::new(QTALK);
    cmd.args(["call", &format!("ws://{addr}/Upper"), "hello"]);
    let out = run(cmd, 30);
    let _ = go.kill();
    let _ = go.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "\"HELLO\"");
}

#[test]
fn qtalk_call_against_the_go_peer_over_quic() {
    let Some(peer) = go_peer() else { return };
    for codec in ["json", "cbor"] {
        let (mut go, addr) = go_listening(
            &peer,
            &["-mode", "rpc-serve", "-codec", codec, "-quic"],
            codec,
        );
        let mut cmd = Command::new(QTALK);
        cmd.args([
            "call",
            "--insecure",
            "--codec",
            codec,
            &format!("quic://{addr}/Upper"),
            "\"hello\"",
        ]);
        let out = run(cmd, 30);
        let _ = go.kill();
        let _ = go.wait();
        assert!(out.status.success(), "{codec}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "\"HELLO\"");
    }
}

#[test]
fn qtalk_bench_against_the_go_interop() {
    let Some(peer) = go_peer() else { return };
    let mut cmd = Command::new(QTALK);
    cmd.args([
        "bench",
        "--duration",
        "300ms",
        "--json",
        &format!("{peer} -mode interop"),
    ]);
    let out = run(cmd, 120);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.is_object(), "{v}");
}
