//! `qtalk call --meta` against the `auth_server` example of the qtalk crate: with the token
//! the call is answered; without it, or with a wrong one, `qtalk` exits 1 and the remote error
//! names the reason.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");

#[test]
fn qtalk_call_against_auth_server() {
    let exe = std::env::current_exe().unwrap();
    let server = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("auth_server");
    if !server.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "qtalk", "--example", "auth_server"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let mut child = Command::new(&server)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();

    let call = |meta: Option<&str>| {
        let mut cmd = Command::new(QTALK);
        cmd.arg("call");
        if let Some(m) = meta {
            cmd.args(["--meta", m]);
        }
        cmd.args([&format!("tcp://{addr}/Upper"), "hello"]);
        cmd.output().unwrap()
    };
    let out = call(Some("authorization=secret"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"HELLO\"");

    let out = call(None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "remote: unauthenticated: no token in metadata \"authorization\""
    );
    let out = call(Some("authorization=guess"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthenticated: invalid token"));
    let _ = child.kill();
    let _ = child.wait();
}
