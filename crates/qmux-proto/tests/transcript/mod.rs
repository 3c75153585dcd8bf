//! Reader for the qtalk-go wire recordings in `tests/vectors` (format: `tests/vectors/README.md`).
//!
//! A transcript line is `C> <hex tokens>  # <description>` or `S> ...`; the hex tokens before `#`
//! concatenated are the exact bytes of one frame. In `cli_check` files a DATA payload longer than
//! 64 bytes is abbreviated to a hex prefix followed by `...(N bytes)`.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

/// Which peer wrote a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `C>`: the side that dialed and made the call.
    Client,
    /// `S>`: the side that accepted and serves the handler.
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client (C)",
            Side::Server => "server (S)",
        })
    }
}

/// One recorded frame.
#[derive(Clone, Debug)]
pub struct Line {
    /// File name relative to the vectors directory, for messages.
    pub file: String,
    /// 1-based line number in the file.
    pub lineno: usize,
    pub side: Side,
    /// The frame's bytes; only a prefix of them when `abbreviated` is set.
    pub bytes: Vec<u8>,
    /// `Some(N)`: the DATA payload was abbreviated and really is N bytes long.
    pub abbreviated: Option<usize>,
    /// The text after `#`, if any.
    pub comment: Option<String>,
}

impl Line {
    /// `file:line` for assertion messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.lineno)
    }
}

/// The `tests/vectors` directory of the workspace.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors"))
}

fn txt_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

/// Top-level transcripts (most frequent ordering of each scenario), without `encodings.txt`
/// and `SUMMARY.txt`.
pub fn top_level_files() -> Vec<PathBuf> {
    txt_files(&vectors_dir())
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != "encodings.txt" && name != "SUMMARY.txt"
        })
        .collect()
}

/// `variants/*.txt`: the other orderings seen.
pub fn variant_files() -> Vec<PathBuf> {
    txt_files(&vectors_dir().join("variants"))
}

/// `cli_check/*_c2s.txt` and `cli_check/*_s2c.txt`.
pub fn cli_check_files() -> Vec<PathBuf> {
    txt_files(&vectors_dir().join("cli_check"))
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with("_c2s.txt") || name.ends_with("_s2c.txt")
        })
        .collect()
}

/// Name of `path` relative to the vectors directory.
pub fn display_name(path: &Path) -> String {
    path.strip_prefix(vectors_dir())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_hex(token: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let t = token.as_bytes();
    if t.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {token:?}"));
    }
    for pair in t.chunks(2) {
        match (hex_digit(pair[0]), hex_digit(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return Err(format!("not hex: {token:?}")),
        }
    }
    Ok(())
}

/// Parses `<hex>...(N bytes)`, the abbreviated last token of a cli_check DATA line.
fn parse_abbreviated(token: &str, out: &mut Vec<u8>) -> Result<Option<usize>, String> {
    let Some((hex, rest)) = token.split_once("...(") else {
        return Ok(None);
    };
    let n = rest
        .strip_suffix(" bytes)")
        .or_else(|| rest.strip_suffix("bytes)"))
        .ok_or_else(|| format!("bad abbreviation {token:?}"))?
        .trim()
        .parse::<usize>()
        .map_err(|e| format!("bad abbreviated length in {token:?}: {e}"))?;
    push_hex(hex, out)?;
    Ok(Some(n))
}

fn parse_line(file: &str, lineno: usize, text: &str) -> Result<Option<Line>, String> {
    let text = text.trim_end();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let side = if text.starts_with("C>") {
        Side::Client
    } else if text.starts_with("S>") {
        Side::Server
    } else {
        return Err(format!("unexpected line {text:?}"));
    };
    let body = &text[2..];
    let (hex_part, comment) = match body.split_once('#') {
        Some((h, c)) => (h, Some(c.trim().to_string())),
        None => (body, None),
    };
    // `...(N bytes)` contains a space: rejoin the tail before tokenizing.
    let (hex_part, abbrev_tail) = match hex_part.find("...(") {
        Some(i) => {
            let start = hex_part[..i]
                .rfind(char::is_whitespace)
                .map_or(0, |j| j + 1);
            (&hex_part[..start], Some(hex_part[start..].trim()))
        }
        None => (hex_part, None),
    };
    let mut bytes = Vec::new();
    for token in hex_part.split_whitespace() {
        push_hex(token, &mut bytes)?;
    }
    let abbreviated = match abbrev_tail {
        Some(tail) => Some(
            parse_abbreviated(tail, &mut bytes)?
                .ok_or_else(|| format!("bad abbreviation {tail:?}"))?,
        ),
        None => None,
    };
    if bytes.is_empty() {
        return Err("line holds no bytes".to_string());
    }
    Ok(Some(Line {
        file: file.to_string(),
        lineno,
        side,
        bytes,
        abbreviated,
        comment,
    }))
}

/// Every frame line of a transcript file, in order. Panics (naming file and line) on a line that
/// is neither a frame nor a comment.
pub fn parse_file(path: &Path) -> Vec<Line> {
    let name = display_name(path);
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            parse_line(&name, i + 1, l).unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1))
        })
        .collect()
}

/// Numeric `key=value` fields of a line's description, e.g. `OPEN sender=0 window=1 ...`:
/// returns the message name and the fields in order.
pub fn comment_fields(comment: &str) -> (String, Vec<(String, u64)>) {
    let mut words = comment.split_whitespace();
    let name = words.next().unwrap_or_default().to_string();
    let fields = words
        .map_while(|w| {
            let (k, v) = w.split_once('=')?;
            if k.is_empty() || !k.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return None;
            }
            Some((k.to_string(), v.parse::<u64>().ok()?))
        })
        .collect();
    (name, fields)
}

#[test]
fn parses_a_line_with_comment() {
    let l = parse_line(
        "x",
        3,
        "C> 64 00000000 40000000 01000000  # OPEN sender=0 window=1073741824 maxpacket=16777216",
    )
    .unwrap()
    .unwrap();
    assert_eq!(l.side, Side::Client);
    assert_eq!(l.bytes, [0x64, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(l.abbreviated, None);
    let (name, fields) = comment_fields(l.comment.as_deref().unwrap());
    assert_eq!(name, "OPEN");
    assert_eq!(fields[2], ("maxpacket".to_string(), 16_777_216));
}

#[test]
fn parses_an_abbreviated_line() {
    let l = parse_line("x", 1, "S> 68 00000001 00000400 ad2e...(1024 bytes)")
        .unwrap()
        .unwrap();
    assert_eq!(l.side, Side::Server);
    assert_eq!(l.bytes, [0x68, 0, 0, 0, 1, 0, 0, 4, 0, 0xad, 0x2e]);
    assert_eq!(l.abbreviated, Some(1024));
    assert!(parse_line("x", 1, "X> 68").is_err());
    assert!(parse_line("x", 1, "C> 6").is_err());
}
