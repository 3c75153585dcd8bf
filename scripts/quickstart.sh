#!/usr/bin/env bash
# Builds README's quick-start server and client, unchanged, in a fresh crate outside the
# workspace that depends only on `qtalk` (by path) and `tokio`, runs them, and checks what the
# client prints. scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
dir="$(mktemp -d)"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/src/bin"
# The first two rust blocks after "## Quick start": the server, then the client.
awk -v out="$dir/src/bin" '
  /^## Quick start/ { on = 1 }
  on && /^```rust/ { n++; file = out "/" (n == 1 ? "upper_server" : "upper_client") ".rs"; inblock = 1; next }
  inblock && /^```/ { inblock = 0; if (n == 2) exit; next }
  inblock { print > file }
' README.md
[ -s "$dir/src/bin/upper_server.rs" ] && [ -s "$dir/src/bin/upper_client.rs" ] || {
  echo "quickstart: README's quick-start blocks not found"; exit 1; }
cat >"$dir/Cargo.toml" <<TOML
[package]
name = "quickstart"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
qtalk = { path = "$repo/crates/qtalk" }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
TOML
cp Cargo.lock "$dir/Cargo.lock"   # the versions the workspace is tested with
# The workspace's target directory: what the crate shares with the workspace's debug build
# (crates with the same features) is not compiled again. Its binaries land in target/debug,
# apart from the workspace's examples (target/debug/examples).
export CARGO_TARGET_DIR="$repo/target"
echo "quickstart: building README's server and client against qtalk alone"
(cd "$dir" && cargo build -q --bins)
"$CARGO_TARGET_DIR/debug/upper_server" &
server=$!
for _ in $(seq 100); do
  out="$("$CARGO_TARGET_DIR/debug/upper_client" 2>&1)" && break
  sleep 0.1
done
expected=$'HELLO WORLD\nremote: user error [/Error]'
if [ "$out" != "$expected" ]; then
  printf 'quickstart: the client printed:\n%s\nexpected:\n%s\n' "$out" "$expected"
  exit 1
fi
echo "quickstart: ok (HELLO WORLD, remote: user error [/Error])"
