#!/usr/bin/env bash
# Builds the Upper/Error example server and client, starts the server on a free port, calls it
# with the client, and stops the server.
#
# The examples are built in the dev profile: the demo makes two calls, so optimizations would
# only add build time (a release build takes more than twice as long), and `cargo test` has
# usually built the same dependencies already. Only the two examples and what they need are
# built (no QUIC, TLS or CLI).
set -euo pipefail
cd "$(dirname "$0")/.."

# Where cargo puts the binaries (CARGO_TARGET_DIR and build.target-dir are honoured).
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
examples="${target_dir:-target}/debug/examples"

echo "== building the Upper/Error examples (cargo build -p qtalk --example upper_server --example upper_client;"
echo "   the first build compiles about 70 crates and takes under a minute)"
cargo build -p qtalk --example upper_server --example upper_client

echo "== starting upper_server on a free port"
out=$(mktemp)
"$examples/upper_server" 127.0.0.1:0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out")
if [ -z "$addr" ]; then
  echo "upper_server did not start" >&2
  exit 1
fi
echo "upper_server listening on $addr"

echo "== upper_client $addr (calls Upper, then Error)"
"$examples/upper_client" "$addr"
echo "== done; stopping upper_server"
