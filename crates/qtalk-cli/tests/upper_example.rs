//! `qtalk call` against the `upper_server` example of the qtalk crate.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const QTALK: &str = env!("CARGO_BIN_EXE_qtalk");

#[test]
fn qtalk_call_against_upper_server() {
    let exe = std::env::current_exe().unwrap();
    let server = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("upper_server");
    if !server.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "qtalk", "--example", "upper_server"])
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

    let call = |sel: &str, arg: &str| {
        let mut cmd = Command::new(QTALK);
        cmd.args([
            "call",
            "--timeout",
            "10s",
            &format!("tcp://{addr}/{sel}"),
            arg,
        ]);
        cmd.output().unwrap()
    };
    let out = call("Upper", "\"hello\"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"HELLO\"");

    let out = call("Error", "user error");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "remote: user error [/Error]"
    );
    let _ = child.kill();
    let _ = child.wait();
}
