#!/usr/bin/env bash
# Builds the examples, starts the Upper/Error server on a free port, calls it with the client,
# and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p qtalk --example upper_server --example upper_client
out=$(mktemp)
./target/release/examples/upper_server 127.0.0.1:0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out")
echo "upper_server listening on $addr"
./target/release/examples/upper_client "$addr"
