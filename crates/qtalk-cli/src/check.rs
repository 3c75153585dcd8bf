//! The reference's `qtalk check` sequence, run against an interop peer.
//!
//! The checker serves [`crate::interop::callbacks`] on its side of the session (the peer
//! calls back) and, through its caller:
//!
//! 1. `Error("test")` must fail with `test`; `BadSelector("test")` with
//!    `not found: /BadSelector`.
//! 2. `Unary(v)` must return `v`, for each of [`values`] (the peer calls `Unary(v)` back).
//! 3. `Stream(null)`, then each of [`values`] streamed after the call and EOF: the same values
//!    must come back, in order, then end-of-stream.
//! 4. `Bytes(null)` with 1 byte, 1 KiB and 1 MiB of random bytes as a raw stream: the same
//!    bytes must come back, then end-of-stream.
//!
//! Each check prints one line exactly as the reference does (`Unary: 100 100`,
//! `Stream: map[foo:bar]`, `Bytes: 1024`, values rendered with Go's `%v`); the first
//! difference stops the sequence with a [`Failure`] saying what differed.

use std::io::Write;
use std::time::{Duration, Instant};

use qtalk::rpc::{Caller, Error};
use qtalk::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::gofmt::{go_format, same_value};
use crate::Failure;

/// How the checks run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Deadline for each check (default 10 s).
    pub timeout: Duration,
    /// Sizes of the `Bytes` checks (default 1, 1024 and 1 MiB).
    pub byte_sizes: Vec<usize>,
    /// What the `Bytes` checks send (default [`Fill::Random`]).
    pub fill: Fill,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(10),
            byte_sizes: vec![1, 1024, 1 << 20],
            fill: Fill::Random,
        }
    }
}

/// The bytes a `Bytes` check sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fill {
    /// Pseudo-random bytes, as the reference's check sends ([`random_bytes`]).
    #[default]
    Random,
    /// Byte `k` is `k mod 256`: the payloads of the recordings in `tests/vectors/check`, so
    /// that a run can be compared with them byte for byte.
    Sequence,
}

impl Fill {
    /// Fills `buf` as this variant says.
    pub fn fill(self, buf: &mut [u8]) {
        match self {
            Fill::Random => random_bytes(buf),
            Fill::Sequence => buf.iter_mut().enumerate().for_each(|(k, b)| *b = k as u8),
        }
    }
}

/// What a passing run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Checks passed (one per printed line).
    pub passed: usize,
    /// Wall time of the whole sequence.
    pub elapsed: Duration,
}

/// The values the `Unary` and `Stream` checks send: `100`, `true`, `"hello"`,
/// `{"foo":"bar"}`, `[1,2,3]`.
pub fn values() -> Vec<Value> {
    vec![
        Value::Int(100),
        Value::Bool(true),
        Value::from("hello"),
        Value::Map(vec![(Value::from("foo"), Value::from("bar"))]),
        Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(3)]),
    ]
}

/// Fills `buf` with pseudo-random bytes (splitmix64 seeded from the clock).
pub fn random_bytes(buf: &mut [u8]) {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::process::id()).rotate_left(32);
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// Runs the whole sequence with `caller`, writing one line per passed check to `out`.
/// The peer's callbacks must be answered by [`crate::interop::callbacks`] on the same session
/// (see [`crate::interop::serve_callbacks`]).
pub async fn run(
    caller: &Caller,
    options: &Options,
    out: &mut (dyn Write + Send),
) -> Result<Summary, Failure> {
    let start = Instant::now();
    let mut passed = 0;
    let mut line = |out: &mut (dyn Write + Send), text: String| {
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
        passed += 1;
    };

    for (selector, expected) in [
        ("Error", "test".to_string()),
        ("BadSelector", "not found: /BadSelector".to_string()),
    ] {
        let what = format!("{selector}(\"test\")");
        let res = within(
            options.timeout,
            &what,
            caller.call::<_, Value>(selector, "test"),
        )
        .await?;
        match res {
            Err(Error::Remote(msg)) if msg == expected => line(out, format!("Error: {msg}")),
            Err(Error::Remote(msg)) => {
                return Err(Failure::Check(format!(
                    "{what}: expected the error {expected:?}, got the error {msg:?}"
                )))
            }
            Ok(v) => {
                return Err(Failure::Check(format!(
                    "{what}: expected the error {expected:?}, got the value {}",
                    go_format(&v)
                )))
            }
            Err(e) => return Err(transport(&what, &e)),
        }
    }

    for v in values() {
        let what = format!("Unary({})", go_format(&v));
        let ret = within(options.timeout, &what, caller.call::<_, Value>("Unary", &v))
            .await?
            .map_err(|e| unexpected(&what, &e))?;
        if !same_value(&v, &ret) {
            return Err(Failure::Check(format!(
                "{what}: returned {} instead of the value sent",
                go_format(&ret)
            )));
        }
        line(out, format!("Unary: {} {}", go_format(&v), go_format(&ret)));
    }

    let sent = values();
    let what = "Stream";
    let received = within(options.timeout, what, stream_check(caller, &sent))
        .await?
        .map_err(|e| unexpected(what, &e))?;
    for (i, got) in received.iter().enumerate() {
        match sent.get(i) {
            Some(want) if same_value(want, got) => line(out, format!("Stream: {}", go_format(got))),
            Some(want) => {
                return Err(Failure::Check(format!(
                    "Stream: value {} came back as {} instead of {}",
                    i + 1,
                    go_format(got),
                    go_format(want)
                )))
            }
            None => {
                return Err(Failure::Check(format!(
                    "Stream: sent {} values but got more back: {}",
                    sent.len(),
                    go_format(got)
                )))
            }
        }
    }
    if received.len() < sent.len() {
        return Err(Failure::Check(format!(
            "Stream: sent {} values but the stream ended after {}",
            sent.len(),
            received.len()
        )));
    }

    for &size in &options.byte_sizes {
        let mut data = vec![0u8; size];
        options.fill.fill(&mut data);
        let what = format!("Bytes({size} bytes)");
        let echoed = within(options.timeout, &what, bytes_check(caller, data.clone()))
            .await?
            .map_err(|e| unexpected(&what, &e))?;
        if echoed.len() != data.len() {
            return Err(Failure::Check(format!(
                "{what}: sent {} bytes, got {} back",
                data.len(),
                echoed.len()
            )));
        }
        // `!=` on the whole buffers is one memcmp, also in a debug build; only a difference is
        // looked for byte by byte.
        if let Some(i) = (echoed != data)
            .then(|| echoed.iter().zip(&data).position(|(a, b)| a != b))
            .flatten()
        {
            return Err(Failure::Check(format!(
                "{what}: byte {i} came back as {:#04x} instead of {:#04x}",
                echoed[i], data[i]
            )));
        }
        line(out, format!("Bytes: {}", echoed.len()));
    }

    Ok(Summary {
        passed,
        elapsed: start.elapsed(),
    })
}

/// `Stream(null)`: sends `values` after the call, then EOF; returns every value received.
async fn stream_check(caller: &Caller, values: &[Value]) -> Result<Vec<Value>, Error> {
    let mut resp = caller.call_raw("Stream", &Value::Null).await?;
    let _reply: Value = resp.receive().await?;
    for v in values {
        resp.send(v).await?;
    }
    resp.close_write()?;
    let mut got = Vec::new();
    while let Some(v) = resp.receive_next::<Value>().await? {
        got.push(v);
    }
    Ok(got)
}

/// `Bytes(null)`: streams `data` raw after the call, then EOF, while reading the echo.
async fn bytes_check(caller: &Caller, data: Vec<u8>) -> Result<Vec<u8>, Error> {
    let mut resp = caller.call_raw("Bytes", &Value::Null).await?;
    let _reply: Value = resp.receive().await?;
    let (mut r, mut w) = tokio::io::split(resp);
    let write = async move {
        w.write_all(&data).await?;
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    };
    let read = async move {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let (w, buf) = tokio::try_join!(write, read)?;
    drop(w);
    Ok(buf)
}

async fn within<T>(
    timeout: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        Failure::Check(format!(
            "{what}: no answer within {}",
            crate::human_duration(timeout)
        ))
    })
}

fn transport(what: &str, e: &Error) -> Failure {
    match e {
        Error::Session(_) | Error::Io(_) => Failure::Transport(format!("{what}: {e}")),
        other => Failure::Check(format!("{what}: {other}{}", crate::codec_hint(other))),
    }
}

fn unexpected(what: &str, e: &Error) -> Failure {
    match e {
        Error::Remote(m) => Failure::Check(format!("{what}: the peer answered with an error: {m}")),
        other => transport(what, other),
    }
}
