//! The `qtalk` binary end to end: check over stdio and sockets, call, hostile input to
//! interop, bench, usage errors. Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");
const LIMIT: Duration = Duration::from_secs(60);

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// `qtalk` with a clean environment for the variables it reads.
fn qtalk() -> Command {
    let mut c = Command::new(QTALK);
    c.env_remove("QTALK_CODEC").env_remove("RUST_LOG");
    c
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut v);
        }
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// Waits for `child` up to `limit` (killing it and failing the test past that), collecting
/// its output.
fn finish(mut child: Child, limit: Duration) -> Output {
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("qtalk did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qtalk");
    finish(child, LIMIT)
}

/// A recording of the reference's `qtalk check` (`tests/vectors/cli_check/NAME` of the
/// workspace, linked into this crate's `tests/data` so that the published package carries it).
fn vector(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines the reference's check printed on stdout (its log lines carry a timestamp).
fn reference_lines(name: &str) -> Vec<String> {
    vector(name)
        .lines()
        .filter(|l| !l.contains("* Using JSON codec"))
        .map(str::to_string)
        .collect()
}

fn assert_check_output(out: &Output, reference: &str, codec: &str) {
    assert_eq!(
        out.code(),
        Some(0),
        "check failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    let want = reference_lines(reference);
    assert_eq!(lines.len(), want.len() + 1, "stdout:\n{}", out.stdout);
    assert_eq!(lines[..want.len()], want[..], "stdout:\n{}", out.stdout);
    let summary = lines[want.len()];
    assert!(
        summary.starts_with("ok: 15 checks passed") && summary.contains(&format!("codec {codec}")),
        "summary: {summary}"
    );
}

/// A line on stderr, exactly one, that is not a panic or a backtrace.
fn assert_one_clean_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked")
            && !stderr.contains("backtrace")
            && !stderr.contains("RUST_BACKTRACE"),
        "stderr: {stderr}"
    );
    lines[0]
}

#[test]
fn check_against_own_interop_over_stdio_cbor() {
    let out = run(qtalk().arg("check"));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
    assert!(!out.stderr.contains("JSON"), "stderr: {}", out.stderr);
}

#[test]
fn check_against_own_interop_over_stdio_json() {
    let out = run(qtalk().arg("check").env("QTALK_CODEC", "json"));
    assert_check_output(&out, "json_check_output.txt", "json");
    assert!(
        out.stderr.contains("* Using JSON codec"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn check_against_a_shell_command_peer() {
    // The command form, as the recordings were made (tee in the middle of the pipe).
    let cmd = format!("cat | '{QTALK}' interop | cat");
    let out = run(qtalk().args(["check", &cmd]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
}

/// A `qtalk interop --listen` process; killed on drop.
struct Listening {
    child: Child,
    url: String,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen(url: &str, codec: Option<&str>) -> Listening {
    let mut cmd = qtalk();
    cmd.args(["interop", "--listen", url]);
    if let Some(c) = codec {
        cmd.env("QTALK_CODEC", c);
    }
    listen_with(cmd, url)
}

/// Starts a prepared `qtalk interop --listen` command and reads the address it prints.
fn listen_with(mut cmd: Command, url: &str) -> Listening {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qtalk interop --listen");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("qtalk interop --listen {url} printed no address"));
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Listening { child, url }
}

#[test]
fn check_via_connect_against_interop_listening_on_tcp() {
    let server = listen("tcp://127.0.0.1:0", None);
    assert!(server.url.starts_with("tcp://127.0.0.1:"), "{}", server.url);
    assert!(!server.url.ends_with(":0"), "{}", server.url);
    let out = run(qtalk().args(["check", "--connect", &server.url]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
    // The listener serves session after session.
    let out = run(qtalk().args(["check", "--connect", &server.url]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
}

#[test]
fn check_via_connect_json_against_interop_listening_on_unix_socket() {
    let dir = std::env::temp_dir().join(format!("qtalk-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("interop.sock");
    let _ = std::fs::remove_file(&sock);
    let url = format!("unix://{}", sock.display());
    let server = listen(&url, Some("json"));
    assert_eq!(server.url, url);
    let out = run(qtalk()
        .args(["check", "--connect", &server.url])
        .env("QTALK_CODEC", "json"));
    assert_check_output(&out, "json_check_output.txt", "json");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_call_and_bench_via_connect_against_interop_listening_on_websocket() {
    let server = listen("ws://127.0.0.1:0", None);
    assert!(server.url.starts_with("ws://127.0.0.1:"), "{}", server.url);
    assert!(!server.url.ends_with(":0"), "{}", server.url);
    let out = run(qtalk().args(["check", "--connect", &server.url]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
    assert!(out.stdout.contains(&server.url), "stdout: {}", out.stdout);
    // The listener serves session after session.
    let out = run(qtalk().args(["check", "--connect", &server.url]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");

    let out = run(qtalk().args([
        "call",
        "--raw",
        "--codec",
        "cbor",
        &format!("{}/Error", server.url),
        "boom",
    ]));
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "remote: boom\n");

    let out = run(qtalk().args([
        "bench",
        "--duration",
        "100ms",
        "--json",
        "--connect",
        &server.url,
    ]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["peer"], server.url.as_str());
}

#[test]
fn call_over_websocket() {
    let server = upper_server_on("json", true);
    assert!(server.url.starts_with("ws://"), "{}", server.url);
    let out = run(qtalk().args(["call", &format!("{}/Upper", server.url), "hello"]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "\"HELLO\"\n");
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    let out = run(qtalk().args(["call", &format!("{}#Fail", server.url), "boom"]));
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "remote: boom\n");

    // A refused connection, and a peer that is not a WebSocket server (plain qmux on TCP).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = run(qtalk().args(["call", &format!("ws://127.0.0.1:{port}/Upper"), "x"]));
    assert_eq!(out.code(), Some(3));
    assert_eq!(
        assert_one_clean_line(&out.stderr),
        format!("qtalk call: cannot connect to ws://127.0.0.1:{port}: Connection refused")
    );
    let tcp = upper_server("json");
    let ws_url = tcp.url.replace("tcp://", "ws://");
    let out = run(qtalk().args(["call", "--timeout", "5s", &format!("{ws_url}/Upper"), "x"]));
    assert_eq!(out.code(), Some(3), "stderr: {}", out.stderr);
    let line = assert_one_clean_line(&out.stderr);
    assert!(
        line.starts_with(&format!("qtalk call: cannot connect to {ws_url}: ")),
        "{line}"
    );
}

#[test]
fn check_reports_a_codec_mismatch_as_a_failure() {
    let server = listen("tcp://127.0.0.1:0", None);
    let out = run(qtalk()
        .args(["check", "--connect", &server.url, "--timeout", "5s"])
        .env("QTALK_CODEC", "json"));
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "stderr: {}", out.stderr); // "* Using JSON codec" + the failure
    assert!(
        lines[1].starts_with("qtalk check: Error(\"test\"): "),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("same codec"), "{}", lines[1]);
}

#[test]
fn check_of_a_peer_that_is_not_there() {
    let out = run(qtalk().args(["check", "exit 7"]));
    assert_eq!(out.code(), Some(3), "stderr: {}", out.stderr);
    let line = assert_one_clean_line(&out.stderr);
    assert!(line.starts_with("qtalk check: "), "{line}");
    assert!(line.contains("exit status: 7"), "{line}");

    // A URL in place of the command is a listening peer; nobody listens there.
    let out = run(qtalk().args(["check", "tcp://127.0.0.1:1"]));
    assert_eq!(out.code(), Some(3), "stderr: {}", out.stderr);
    assert_eq!(
        assert_one_clean_line(&out.stderr),
        "qtalk check: cannot connect to tcp://127.0.0.1:1: Connection refused"
    );
}

/// A server with `Upper`, `Fail`, `Join` and `Info`, on a runtime of its own.
struct UpperServer {
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for UpperServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn upper_server(codec: &str) -> UpperServer {
    upper_server_on(codec, false)
}

/// [`upper_server`] on TCP, or with `websocket` on a WebSocket listener.
fn upper_server_on(codec: &str, websocket: bool) -> UpperServer {
    use qtalk::rpc::{func, handler_fn, Call, RespondMux, Responder, Server};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mux = RespondMux::new();
    mux.handle(
        "Upper",
        func(|_c: Call, (s,): (String,)| async move { Ok::<_, String>(s.to_uppercase()) }),
    )
    .unwrap();
    mux.handle(
        "Join",
        func(
            |_c: Call, (a, b): (String, String)| async move { Ok::<_, String>(format!("{a}-{b}")) },
        ),
    )
    .unwrap();
    mux.handle(
        "Fail",
        func(|_c: Call, (text,): (String,)| async move { Err::<(), _>(text) }),
    )
    .unwrap();
    mux.handle(
        "Info",
        handler_fn(|r: Responder, mut call: Call| async move {
            let args: qtalk::Value = call.receive().await.unwrap_or_default();
            let reply = qtalk::Value::Map(vec![
                (qtalk::Value::from("name"), qtalk::Value::from("qtalk")),
                (
                    qtalk::Value::from("list"),
                    qtalk::Value::Array(vec![1.into(), 2.into()]),
                ),
                (qtalk::Value::from("args"), args),
            ]);
            let _ = r.ret(&reply).await;
        }),
    )
    .unwrap();
    let codec = qtalk_cli::peer::codec_by_name(codec).expect("codec");
    let server = Server::new(mux, codec);
    let addr = runtime.block_on(async move {
        let config = qtalk_mux::Config::default();
        let listener = if websocket {
            qtalk_mux::Listener::bind_ws("127.0.0.1:0", config).await
        } else {
            qtalk_mux::Listener::bind_tcp("127.0.0.1:0", config).await
        }
        .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { server.serve(listener).await });
        addr
    });
    let scheme = if websocket { "ws" } else { "tcp" };
    UpperServer {
        url: format!("{scheme}://{addr}"),
        runtime: Some(runtime),
    }
}

#[test]
fn call_prints_the_reply_as_indented_json() {
    let server = upper_server("json");
    let out = run(qtalk().args(["call", &format!("{}/Upper", server.url), "\"hello\""]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "\"HELLO\"\n");
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);

    // A bare word is a string; several arguments are an array.
    let out = run(qtalk().args(["call", &format!("{}/Upper", server.url), "hello"]));
    assert_eq!(out.stdout, "\"HELLO\"\n", "stderr: {}", out.stderr);
    let out = run(qtalk().args(["call", &format!("{}/Join", server.url), "a", "\"b\""]));
    assert_eq!(out.stdout, "\"a-b\"\n", "stderr: {}", out.stderr);

    // Indentation as Go's json.MarshalIndent(v, "", "  "), keys sorted.
    let out = run(qtalk().args([
        "call",
        &format!("{}/Info", server.url),
        "{\"k\":[true,null]}",
        "-5",
    ]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        "{\n  \"args\": [\n    {\n      \"k\": [\n        true,\n        null\n      ]\n    },\n    -5\n  ],\n  \"list\": [\n    1,\n    2\n  ],\n  \"name\": \"qtalk\"\n}\n"
    );
    // No argument sends null.
    let out = run(qtalk().args(["call", &format!("{}#Info", server.url)]));
    assert!(
        out.stdout.contains("\"args\": null"),
        "stdout: {}",
        out.stdout
    );
    // One argument is a one-element parameter array, unless --raw sends it as itself.
    let info = format!("{}/Info", server.url);
    let out = run(qtalk().args(["call", &info, "7"]));
    assert!(
        out.stdout.contains("\"args\": [\n    7\n  ]"),
        "stdout: {}",
        out.stdout
    );
    for args in [
        vec!["call", "--raw", &info, "7"],
        vec!["call", &info, "--raw", "7"],
    ] {
        let out = run(qtalk().args(&args));
        assert!(
            out.stdout.contains("\"args\": 7,"),
            "{args:?}: {}",
            out.stdout
        );
    }
    let out = run(qtalk().args(["call", &info, "7", "--raw"]));
    assert!(
        out.stdout.contains("\"--raw\""),
        "after the first ARG everything is an ARG: {}",
        out.stdout
    );
}

#[test]
fn call_raw_against_the_interop_service() {
    let server = listen("tcp://127.0.0.1:0", Some("json"));
    let out = run(qtalk().args(["call", "--raw", &format!("{}/Error", server.url), "boom"]));
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "remote: boom\n");
    // Unary calls back the caller, which serves nothing: the callback's error comes back.
    let out = run(qtalk().args(["call", "--raw", &format!("{}/Unary", server.url), "1"]));
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert_eq!(
        out.stderr,
        "remote: Unary callback: remote: not found: /Unary\n"
    );
}

#[test]
fn call_with_cbor() {
    let server = upper_server("cbor");
    let out = run(qtalk().args([
        "call",
        "--codec",
        "cbor",
        &format!("{}/Upper", server.url),
        "\"hello\"",
    ]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "\"HELLO\"\n");
}

#[test]
fn call_remote_error_exits_1() {
    let server = upper_server("json");
    let out = run(qtalk().args(["call", &format!("{}/Fail", server.url), "\"boom\""]));
    assert_eq!(out.code(), Some(1));
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    assert_eq!(out.stderr, "remote: boom\n");

    let out = run(qtalk().args(["call", &format!("{}/Nope", server.url)]));
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "remote: not found: /Nope\n");

    let out = run(qtalk().args(["call", &format!("{}/Upper", server.url)]));
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stderr, "remote: fn: expected 1 params, got 0\n");
}

#[test]
fn call_refused_connection_is_one_line_exit_3() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = run(qtalk().args(["call", &format!("tcp://127.0.0.1:{port}/Upper"), "x"]));
    assert_eq!(out.code(), Some(3));
    let line = assert_one_clean_line(&out.stderr);
    assert_eq!(
        line,
        format!("qtalk call: cannot connect to tcp://127.0.0.1:{port}: Connection refused")
    );

    let missing = std::env::temp_dir().join("qtalk-cli-no-such-dir/x.sock");
    let out = run(qtalk().args(["call", &format!("unix://{}#Upper", missing.display())]));
    assert_eq!(out.code(), Some(3));
    assert!(assert_one_clean_line(&out.stderr).contains("cannot connect to unix://"));
}

#[test]
fn call_times_out_against_a_silent_server() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let started = Instant::now();
    let out = run(qtalk().args([
        "call",
        "--timeout",
        "300ms",
        &format!("tcp://127.0.0.1:{port}/Upper"),
    ]));
    assert_eq!(out.code(), Some(3), "stderr: {}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    let line = assert_one_clean_line(&out.stderr);
    assert!(line.contains("within 300.00ms"), "{line}");
    drop(l);
}

#[test]
fn bad_urls_and_usage_are_one_line_exit_2() {
    for (url, needle) in [
        ("tcp://localhost/Upper", "missing port"),
        ("tls://localhost/Upper", "missing port"),
        ("http://localhost:9000/Upper", "unknown scheme"),
        ("https://localhost:9000/A?x=1", "query"),
        ("ws://127.0.0.1:9000", "names no selector"),
        ("unix://tmp/x.sock#Upper", "three slashes"),
        ("localhost:9000/Upper", "unknown scheme"),
        ("tcp://127.0.0.1:9000", "names no selector"),
        ("tcp://127.0.0.1:99999/X", "not a port"),
    ] {
        let out = run(qtalk().args(["call", url]));
        assert_eq!(out.code(), Some(2), "{url}: {}", out.stderr);
        let line = assert_one_clean_line(&out.stderr);
        assert!(line.starts_with("qtalk call: "), "{url}: {line}");
        assert!(line.contains(needle), "{url}: {line}");
    }
    let out = run(qtalk().args(["call", "tcp://127.0.0.1:1/X", "{\"a\":"]));
    assert_eq!(out.code(), Some(2));
    assert!(assert_one_clean_line(&out.stderr).contains("not valid JSON"));

    let out = run(qtalk().args(["check"]).env("QTALK_CODEC", "xml"));
    assert_eq!(out.code(), Some(2));
    assert!(assert_one_clean_line(&out.stderr).contains("QTALK_CODEC"));

    let out = run(qtalk().args(["frobnicate"]));
    assert_eq!(out.code(), Some(2));
    let out = run(qtalk().args(["call", "--codec", "xml", "tcp://h:1/X"]));
    assert_eq!(out.code(), Some(2));
}

#[test]
fn help_documents_examples_and_exit_codes() {
    for args in [
        vec!["--help"],
        vec!["call", "--help"],
        vec!["interop", "--help"],
        vec!["check", "--help"],
        vec!["bench", "--help"],
    ] {
        let out = run(qtalk().args(&args));
        assert_eq!(out.code(), Some(0), "{args:?}");
        assert!(
            out.stdout.contains("Exit codes:"),
            "{args:?}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("Examples:"), "{args:?}: {}", out.stdout);
    }
    let out = run(qtalk().args(["call", "--help"]));
    assert!(out.stdout.contains("unix:///abs/path/to.sock#Selector"));
    assert!(out.stdout.contains("ws://HOST[:PORT]/Selector"));
    assert!(!out.stdout.contains("ws:// is not supported"));
}

/// Starts `qtalk interop` on stdio with every stream piped.
fn interop_on_stdio() -> Child {
    qtalk()
        .arg("interop")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qtalk interop")
}

const OPEN: [u8; 13] = [
    0x64, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0x04, 0, 0, // OPEN sender=0 window=4MiB max=256KiB
];

fn assert_interop_refused(out: &Output, needle: &str) {
    assert_ne!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(
        out.status.code().is_some(),
        "killed by a signal: {:?}",
        out.status
    );
    let line = assert_one_clean_line(&out.stderr);
    assert!(
        line.starts_with("qtalk interop: peer broke the protocol: "),
        "{line}"
    );
    assert!(line.contains(needle), "{line}");
}

#[test]
fn interop_exits_on_garbage_bytes() {
    let mut child = interop_on_stdio();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
        .expect("write");
    // Keep stdin open: the garbage alone must end it.
    let out = finish(child, Duration::from_secs(20));
    drop(stdin);
    assert_interop_refused(&out, "unknown message type");
    assert_eq!(out.code(), Some(3));
    assert!(out.stdout.is_empty());
}

#[test]
fn interop_exits_on_a_truncated_frame() {
    let mut child = interop_on_stdio();
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(&OPEN[..7]).expect("write");
    drop(stdin);
    let out = finish(child, Duration::from_secs(20));
    assert_interop_refused(&out, "ended inside a frame");
}

/// Opens a channel like a proper peer (waiting for OPEN_CONFIRM to learn the interop's id),
/// then sends one DATA frame carrying an rpc length prefix of 0x7fffffff.
fn send_oversized_rpc_frame(close_stdin: bool) -> Output {
    let mut child = interop_on_stdio();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    stdin.write_all(&OPEN).expect("write OPEN");
    stdin.flush().expect("flush");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut confirm = [0u8; 17];
        let res = stdout.read_exact(&mut confirm).map(|_| confirm);
        let _ = tx.send(res);
        // Keep reading so the interop never blocks on a full pipe.
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    let confirm = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(c)) => c,
        other => {
            let _ = child.kill();
            panic!("no OPEN_CONFIRM from qtalk interop: {other:?}");
        }
    };
    assert_eq!(confirm[0], 0x65, "expected OPEN_CONFIRM: {confirm:02x?}");
    assert_eq!(&confirm[1..5], &[0, 0, 0, 0], "confirms our channel 0");
    let theirs = &confirm[5..9];
    let mut data = vec![0x68];
    data.extend_from_slice(theirs);
    data.extend_from_slice(&4u32.to_be_bytes());
    data.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    stdin.write_all(&data).expect("write DATA");
    stdin.flush().expect("flush");
    if close_stdin {
        drop(stdin);
        finish(child, Duration::from_secs(20))
    } else {
        let out = finish(child, Duration::from_secs(20));
        drop(stdin);
        out
    }
}

#[test]
fn interop_exits_on_an_oversized_rpc_frame() {
    let out = send_oversized_rpc_frame(false);
    assert_interop_refused(&out, "2147483647");
    assert_eq!(out.code(), Some(3));
}

#[test]
fn interop_exits_on_an_oversized_rpc_frame_followed_by_eof() {
    let out = send_oversized_rpc_frame(true);
    assert_interop_refused(&out, "exceeds the limit");
}

#[test]
fn interop_exits_cleanly_when_stdin_ends() {
    let mut child = interop_on_stdio();
    drop(child.stdin.take());
    let out = finish(child, Duration::from_secs(20));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn bench_prints_a_table_and_json() {
    let out = run(qtalk().args(["bench", "--duration", "100ms", "--concurrency", "8"]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    for needle in [
        "Bytes stream, sending",
        "Bytes stream, receiving",
        "MiB/s",
        "Unary, 1 caller",
        "Unary, 8 callers",
        "calls/s",
    ] {
        assert!(out.stdout.contains(needle), "{needle}: {}", out.stdout);
    }
    assert!(
        out.stderr.contains("bench: "),
        "progress on stderr: {}",
        out.stderr
    );

    let out = run(qtalk()
        .args(["bench", "--duration", "100ms", "--json"])
        .env("QTALK_CODEC", "json"));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output does not parse ({e}):\n{}", out.stdout));
    assert_eq!(v["codec"], "json");
    assert!(v["bytes"]["bytes_sent"].as_u64().unwrap() > 0);
    assert_eq!(v["bytes"]["bytes_sent"], v["bytes"]["bytes_received"]);
    assert!(v["bytes"]["send_mib_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["unary_sequential"]["callers"], 1);
    assert_eq!(v["unary_concurrent"]["callers"], 64);
    assert!(v["unary_sequential"]["calls"].as_u64().unwrap() > 0);
    assert!(v["unary_concurrent"]["p99_us"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_via_connect() {
    let server = listen("tcp://127.0.0.1:0", None);
    let out = run(qtalk().args([
        "bench",
        "--duration",
        "100ms",
        "--json",
        "--connect",
        &server.url,
    ]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["peer"], server.url.as_str());
}

#[test]
fn check_call_and_bench_over_quic_with_a_self_signed_certificate() {
    let server = listen("quic://127.0.0.1:0", None);
    assert!(
        server.url.starts_with("quic://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(!server.url.ends_with(":0"), "{}", server.url);
    let out = run(qtalk().args(["check", "--insecure", "--connect", &server.url]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
    // The reference's spelling of a QUIC address.
    let udp = server.url.replace("quic://", "udp://");
    let out = run(qtalk().args(["check", "--insecure", "--connect", &udp]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");

    let call = |extra: &[&str]| {
        let mut cmd = qtalk();
        cmd.args(["call", "--raw", "--codec", "cbor"]).args(extra);
        cmd.args([&format!("{}/Error", server.url), "boom"]);
        run(&mut cmd)
    };
    let out = call(&["--insecure"]);
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "remote: boom\n");

    // Without --insecure the self-signed certificate is not trusted: one line, exit 3.
    let out = call(&[]);
    assert_eq!(out.code(), Some(3), "stderr: {}", out.stderr);
    let line = assert_one_clean_line(&out.stderr);
    assert!(
        line.starts_with(&format!("qtalk call: cannot connect to {}: ", server.url))
            && line.contains("certificate"),
        "{line}"
    );

    let out = run(qtalk().args([
        "bench",
        "--insecure",
        "--duration",
        "100ms",
        "--json",
        "--connect",
        &server.url,
    ]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["peer"], server.url.as_str());
}

#[test]
fn quic_with_certificate_files_and_a_trusted_ca() {
    let dir = std::env::temp_dir().join(format!("qtalk-cli-quic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = qtalk_mux::tls::self_signed_pem(&["localhost"]).expect("certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert).expect("write cert");
    std::fs::write(&key_path, key).expect("write key");
    let (cert_arg, key_arg) = (
        cert_path.to_str().expect("utf-8 path"),
        key_path.to_str().expect("utf-8 path"),
    );

    let mut cmd = qtalk();
    cmd.args(["interop", "--listen", "quic://127.0.0.1:0"])
        .args(["--cert", cert_arg, "--key", key_arg]);
    let server = listen_with(cmd, "quic");
    // The certificate names localhost: dial by that name.
    let url = server.url.replace("127.0.0.1", "localhost");
    let out = run(qtalk().args(["check", "--ca", cert_arg, "--connect", &url]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
    // By address, the name does not match the certificate.
    let out = run(qtalk().args(["check", "--ca", cert_arg, "--connect", &server.url]));
    assert_eq!(out.code(), Some(3), "stdout: {}", out.stdout);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);

    // A key without a certificate, a missing file, and TLS files for a TCP listener are usage
    // errors.
    let out = run(qtalk().args([
        "interop",
        "--listen",
        "quic://127.0.0.1:0",
        "--key",
        key_arg,
    ]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let out = run(qtalk().args([
        "interop",
        "--listen",
        "quic://127.0.0.1:0",
        "--cert",
        "/nonexistent/cert.pem",
        "--key",
        key_arg,
    ]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        assert_one_clean_line(&out.stderr).contains("/nonexistent/cert.pem"),
        "{}",
        out.stderr
    );
    let out = run(qtalk().args([
        "interop",
        "--listen",
        "tcp://127.0.0.1:0",
        "--cert",
        cert_arg,
        "--key",
        key_arg,
    ]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(assert_one_clean_line(&out.stderr).contains("quic://"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_and_call_over_tls_and_wss() {
    for scheme in ["tls", "wss"] {
        let server = listen(&format!("{scheme}://127.0.0.1:0"), Some("json"));
        assert!(
            server.url.starts_with(&format!("{scheme}://127.0.0.1:")),
            "{}",
            server.url
        );
        let out = run(qtalk()
            .args(["check", "--insecure", "--connect", &server.url])
            .env("QTALK_CODEC", "json"));
        assert_check_output(&out, "json_check_output.txt", "json");
        let out = run(qtalk().args([
            "call",
            "--insecure",
            "--raw",
            &format!("{}/Error", server.url),
            "boom",
        ]));
        assert_eq!(out.code(), Some(1), "{scheme}: {}", out.stderr);
        assert_eq!(out.stderr, "remote: boom\n");
        // The self-signed certificate is not trusted without --insecure, and the error says
        // what to do about it.
        let out = run(qtalk().args(["call", &format!("{}/Error", server.url), "x"]));
        assert_eq!(out.code(), Some(3), "{scheme}: {}", out.stderr);
        let line = assert_one_clean_line(&out.stderr);
        assert!(line.contains("certificate"), "{scheme}: {line}");
        assert!(
            line.contains("--insecure") && line.contains("--ca FILE"),
            "{scheme}: {line}"
        );
    }
}

#[test]
fn check_takes_a_url_in_place_of_a_command_as_the_reference() {
    let server = listen("quic://127.0.0.1:0", None);
    // The reference's checker dials QUIC for a `udp://host:port` argument.
    let udp = server.url.replace("quic://", "udp://");
    let out = run(qtalk().args(["check", "--insecure", &udp]));
    assert_check_output(&out, "cbor_check_output.txt", "cbor");
    let out = run(qtalk().args(["check", "tcp://127.0.0.1:notaport"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(assert_one_clean_line(&out.stderr).contains("not a port"));
}

#[test]
fn a_refused_self_signed_quic_certificate_names_the_options() {
    let server = listen("quic://127.0.0.1:0", None);
    let out = run(qtalk().args(["call", &format!("{}/Error", server.url), "x"]));
    assert_eq!(out.code(), Some(3), "{}", out.stderr);
    let line = assert_one_clean_line(&out.stderr);
    assert!(
        line.contains("UnknownIssuer") && line.contains("--insecure") && line.contains("--ca FILE"),
        "{line}"
    );
}

#[test]
fn quic_to_a_silent_udp_port_gives_up_within_the_connect_timeout() {
    // Bound, so that no ICMP error comes back, but nobody answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let addr = silent.local_addr().expect("addr");
    let started = Instant::now();
    let out = run(qtalk().args(["call", &format!("quic://{addr}/Upper"), "x"]));
    let took = started.elapsed();
    assert_eq!(out.code(), Some(3), "{}", out.stderr);
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let line = assert_one_clean_line(&out.stderr);
    assert_eq!(
        line,
        format!(
            "qtalk call: cannot connect to quic://{addr}: no QUIC answer from {addr} within \
             3.00s (is a QUIC server listening on UDP there?)"
        )
    );

    let started = Instant::now();
    let out = run(qtalk().args([
        "check",
        "--connect-timeout",
        "500ms",
        "--connect",
        &format!("quic://{addr}"),
    ]));
    assert_eq!(out.code(), Some(3), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        assert_one_clean_line(&out.stderr).contains("within 500.00ms"),
        "{}",
        out.stderr
    );
    drop(silent);
}

#[test]
fn bench_warns_when_built_without_optimizations() {
    let out = run(qtalk().args(["bench", "--duration", "20ms"]));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let warned = out.stderr.lines().next().unwrap_or_default();
    // The test is built with the same profile as the binary.
    if cfg!(debug_assertions) {
        assert!(
            warned.starts_with("warning: this qtalk is a debug build")
                && warned.contains("5-30x slower")
                && warned.contains("cargo run --release -p qtalk-cli -- bench"),
            "stderr: {}",
            out.stderr
        );
    } else {
        assert!(!out.stderr.contains("debug build"), "{}", out.stderr);
    }
}

#[test]
fn interop_on_a_terminal_says_what_it_is_for() {
    let hint = qtalk_cli::interop::terminal_hint(true).expect("a hint for a terminal");
    assert!(hint.contains("stdin/stdout") && hint.contains("--listen URL"));
    assert_eq!(qtalk_cli::interop::terminal_hint(false), None);

    // Without a terminal (here /dev/null), nothing but the protocol.
    let out = run(qtalk().arg("interop"));
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert!(out.stderr.is_empty(), "stderr: {}", out.stderr);

    // On a terminal: util-linux `script` gives `qtalk interop` a pseudo-terminal as stdin
    // (and ends it when its own stdin, /dev/null, ends).
    let Ok(child) = Command::new("script")
        .args(["-qec", &format!("'{QTALK}' interop"), "/dev/null"])
        .env_remove("QTALK_CODEC")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!(
            "no `script` command here: the terminal case is checked through terminal_hint only"
        );
        return;
    };
    let out = finish(child, LIMIT);
    assert!(
        out.stdout.contains(hint),
        "stdout of script: {:?}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn host_and_port_without_a_scheme_suggests_tcp() {
    let out = run(qtalk().args(["call", "127.0.0.1:9999/Upper", "x"]));
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let line = assert_one_clean_line(&out.stderr);
    assert!(
        line.ends_with("(for a TCP peer write tcp://127.0.0.1:9999/Upper)"),
        "{line}"
    );
}
