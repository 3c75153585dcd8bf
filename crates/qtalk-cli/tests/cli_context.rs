//! `qtalk call --meta` and `--timeout` (sent as the call's deadline), and mutual TLS:
//! `qtalk interop --listen ... --client-ca` refuses clients without a certificate, and
//! `--cert/--key` gets one through, over TLS, WebSocket over TLS and QUIC. Every wait is
//! bounded.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");
const LIMIT: Duration = Duration::from_secs(60);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn qtalk() -> Command {
    let mut c = Command::new(QTALK);
    c.env_remove("QTALK_CODEC").env_remove("RUST_LOG");
    c
}

fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qtalk");
    let drain = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "qtalk did not finish");
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// A `qtalk interop --listen` process, killed on drop.
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

fn listen_with(mut cmd: Command) -> Listening {
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
        .expect("qtalk interop --listen printed no address");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Listening { child, url }
}

/// An in-process server whose `Context` answers the metadata and the seconds left of the
/// call it received.
struct ContextServer {
    url: String,
    _runtime: tokio::runtime::Runtime,
}

fn context_server() -> ContextServer {
    use qtalk::rpc::{func, Call, RespondMux, Server};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mux = RespondMux::new();
    mux.handle(
        "Context",
        func(|call: Call, (): ()| async move {
            let meta: std::collections::BTreeMap<String, String> = call
                .metadata()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Ok::<_, String>((meta, call.remaining().map(|d| d.as_secs())))
        }),
    )
    .unwrap();
    let server = Server::new(mux, qtalk::codec::Json);
    let addr = runtime.block_on(async {
        let l = qtalk_mux::Listener::bind_tcp("127.0.0.1:0", Default::default())
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { server.serve(l).await });
        addr
    });
    ContextServer {
        url: format!("tcp://{addr}"),
        _runtime: runtime,
    }
}

#[test]
fn call_sends_metadata_and_its_timeout_as_the_deadline() {
    let server = context_server();
    let out = run(qtalk().args([
        "call",
        "--meta",
        "authorization=secret",
        "--meta",
        "x-request-id=r=1",
        "--timeout",
        "30s",
        &format!("{}/Context", server.url),
    ]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v[0]["authorization"], "secret");
    // Only the first `=` splits.
    assert_eq!(v[0]["x-request-id"], "r=1");
    let left = v[1].as_u64().expect("a deadline");
    assert!((20..=30).contains(&left), "{left}");

    // Without --meta, none; the default timeout (10 s) is the deadline.
    let out = run(qtalk().args(["call", &format!("{}/Context", server.url)]));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v[0], serde_json::json!({}));
    assert!(v[1].as_u64().unwrap() <= 10);

    let out = run(qtalk().args([
        "call",
        "--meta",
        "novalue",
        &format!("{}/Context", server.url),
    ]));
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("KEY=VALUE"), "{}", out.stderr);
}

/// Certificate files in a fresh directory: the server's (for localhost), a client's, and a
/// stranger's.
struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("qtalk-mtls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, host) in [
            ("server", "localhost"),
            ("client", "client-1"),
            ("stranger", "x"),
        ] {
            let (cert, key) = qtalk_mux::tls::self_signed_pem(&[host]).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn client_ca_requires_a_client_certificate_over_tls_wss_and_quic() {
    for scheme in ["tls", "wss", "quic"] {
        let files = Files::new(scheme);
        let mut cmd = qtalk();
        cmd.args([
            "interop",
            "--listen",
            &format!("{scheme}://127.0.0.1:0"),
            "--cert",
            &files.path("server.pem"),
            "--key",
            &files.path("server.key"),
            // The client's own certificate is the CA here (self-signed).
            "--client-ca",
            &files.path("client.pem"),
        ]);
        let server = listen_with(cmd);
        let url = server.url.replace("127.0.0.1", "localhost");
        let ca = files.path("server.pem");

        // With the client's certificate: the whole check passes.
        let out = run(qtalk().args([
            "check",
            "--ca",
            &ca,
            "--cert",
            &files.path("client.pem"),
            "--key",
            &files.path("client.key"),
            "--connect",
            &url,
        ]));
        assert_eq!(out.code, Some(0), "{scheme}: {}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("checks passed"), "{}", out.stdout);

        // Without one, or with one the server does not trust: refused, exit 3, one line.
        for cert in [None, Some("stranger")] {
            let mut cmd = qtalk();
            cmd.args(["call", "--raw", "--ca", &ca, "--connect-timeout", "5s"]);
            if let Some(name) = cert {
                cmd.args([
                    "--cert",
                    &files.path(&format!("{name}.pem")),
                    "--key",
                    &files.path(&format!("{name}.key")),
                ]);
            }
            cmd.args([&format!("{url}/Error"), "boom"]);
            let out = run(&mut cmd);
            assert_eq!(out.code, Some(3), "{scheme} {cert:?}: {}", out.stderr);
            assert!(!out.stderr.contains("remote: boom"), "{}", out.stderr);
            assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
            if cert.is_none() {
                assert!(
                    out.stderr.contains("client certificate"),
                    "{scheme}: {}",
                    out.stderr
                );
            }
        }
    }
}
