//! The `qtalk` binary over WebTransport (`https://`): `qtalk check` against `qtalk interop
//! --listen https://...` in both codecs, a 16 MiB Bytes exchange both ways, the certificate
//! options, and quic:// on the same port. Every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use qtalk_mux::tls::{self, CertificateHash};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");
const LIMIT: Duration = Duration::from_secs(120);

fn qtalk() -> Command {
    let mut c = Command::new(QTALK);
    c.env_remove("QTALK_CODEC").env_remove("RUST_LOG");
    c
}

/// Runs `cmd` to its end (killed past [`LIMIT`]), with its output.
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
            v
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("qtalk did not finish within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `qtalk interop --listen https://...` process (killed on drop), with the URL and the
/// certificate hash it printed.
struct Listening {
    child: Child,
    url: String,
    hash: String,
    lines: Vec<String>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen(codec: &str, extra: &[&str]) -> Listening {
    let mut child = qtalk()
        .args(["interop", "--listen", "https://127.0.0.1:0/"])
        .args(extra)
        .env("QTALK_CODEC", codec)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn qtalk interop");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("certificate sha-256: "))
    {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no certificate hash printed; got {lines:?}"));
        lines.push(line);
    }
    let url = lines[0]
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {}", lines[0]))
        .to_string();
    let hash = lines
        .iter()
        .find_map(|l| l.strip_prefix("certificate sha-256: "))
        .unwrap()
        .to_string();
    Listening {
        child,
        url,
        hash,
        lines,
    }
}

/// The reference's `qtalk check` output for `codec`, as recorded.
fn reference_lines(codec: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/data/{codec}_check_output.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("* Using JSON codec"))
        .map(str::to_string)
        .collect()
}

fn assert_checked(out: &Output, codec: &str, extra_lines: &[&str]) {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check failed:\nstdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let mut want = reference_lines(codec);
    want.extend(extra_lines.iter().map(|l| l.to_string()));
    assert_eq!(lines[..want.len()], want[..], "stdout:\n{stdout}");
    let summary = lines[want.len()];
    assert!(
        summary.starts_with("ok: ") && summary.contains(&format!("codec {codec}")),
        "{summary}"
    );
    assert!(
        text(&out.stderr).lines().all(|l| !l.contains("WARN")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_over_webtransport_in_both_codecs() {
    for codec in ["cbor", "json"] {
        let server = listen(codec, &[]);
        assert!(
            server.url.starts_with("https://127.0.0.1:"),
            "{}",
            server.url
        );
        assert!(server.url.ends_with('/') && !server.url.ends_with(":0/"));
        assert_eq!(server.hash.len(), 64, "{:?}", server.lines);
        assert!(server
            .lines
            .iter()
            .any(|l| l.contains("development certificate")));
        let out = run(qtalk()
            .args([
                "check",
                "--cert-hash",
                &server.hash,
                "--connect",
                &server.url,
            ])
            .env("QTALK_CODEC", codec));
        assert_checked(&out, codec, &[]);
    }
}

#[test]
fn sixteen_mib_bytes_both_ways_over_webtransport() {
    // The Bytes check sends through the peer, which echoes through this side's callback.
    let server = listen("cbor", &[]);
    let out = run(qtalk().args([
        "check",
        "--cert-hash",
        &server.hash,
        "--bytes",
        "16MiB",
        "--timeout",
        "60s",
        "--connect",
        &server.url,
    ]));
    assert_checked(&out, "cbor", &["Bytes: 16777216"]);
}

#[test]
fn quic_on_the_same_port_and_the_certificate_options() {
    let server = listen("cbor", &[]);
    // quic:// on the same UDP port, by ALPN.
    let quic = server.url.replace("https://", "quic://");
    let quic = quic.trim_end_matches('/');
    let out = run(qtalk().args(["check", "--insecure", "--connect", quic]));
    assert_checked(&out, "cbor", &[]);
    // --insecure over https:// too.
    let out = run(qtalk().args(["check", "--insecure", "--connect", &server.url]));
    assert_checked(&out, "cbor", &[]);
    // Untrusted, or pinned to another hash: one line, exit 3, naming the options.
    for extra in [&[][..], &["--cert-hash", &"ab".repeat(32)][..]] {
        let out = run(qtalk()
            .args(["call", "--raw", "--codec", "cbor"])
            .args(extra)
            .args([&format!("{}Error", server.url), "boom"]));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("qtalk call: cannot connect to {}: ", server.url))
                && stderr.contains("certificate"),
            "{stderr}"
        );
    }
    // A call with the selector as the path, as for ws://.
    let out = run(qtalk()
        .args([
            "call",
            "--raw",
            "--codec",
            "cbor",
            "--cert-hash",
            &server.hash,
        ])
        .args([&format!("{}Error", server.url), "boom"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "remote: boom\n");
    // A bad hash is a usage error.
    let out = run(qtalk().args(["check", "--cert-hash", "xyz", "--connect", &server.url]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = run(qtalk().args([
        "bench",
        "--cert-hash",
        &server.hash,
        "--duration",
        "100ms",
        "--json",
        "--connect",
        &server.url,
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["peer"], server.url.as_str());
}

#[test]
fn webtransport_with_certificate_files_and_a_trusted_ca() {
    let dir = std::env::temp_dir().join(format!("qtalk-cli-wt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_pem, key_pem) = tls::self_signed_for_browsers_pem(&["localhost"]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let certs = tls::load_certs(&cert).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = listen("cbor", &["--cert", cert, "--key", key]);
    // The hash of the certificate given, and no development note.
    assert_eq!(server.hash, CertificateHash::of(&certs[0]).to_string());
    assert!(!server
        .lines
        .iter()
        .any(|l| l.contains("development certificate")));
    // Verified by a CA (the certificate itself), by name: localhost.
    let url = server.url.replace("127.0.0.1", "localhost");
    let out = run(qtalk().args(["check", "--ca", cert, "--connect", &url]));
    assert_checked(&out, "cbor", &[]);
    std::fs::remove_dir_all(&dir).unwrap();
}
