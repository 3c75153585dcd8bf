#!/usr/bin/env bash
# The whole test suite: formatting, lints, docs, and every test of the workspace, including the
# interop tests against the Go reference peer (interop/go) when it can be built.
#
# QTALK_GO_PEER=PATH       use an already built Go peer instead of building interop/go.
# QTALK_GO_SRC=DIR         build the Go peer against this checkout of qtalk-go (default: ../qtalk-go
#                          when the module proxy does not serve the reference; scripts/go-peer.sh).
# QTALK_REQUIRE_GO_PEER=1  a Go peer that is missing or cannot be built fails the run (CI sets it
#                          when a checkout is present).
set -euo pipefail
cd "$(dirname "$0")/.."

require="${QTALK_REQUIRE_GO_PEER:-0}"
echo "== Go reference peer (interop/go)"
peer="$PWD/target/qtalk-go-peer"
mkdir -p target
reason=""
# shellcheck source=scripts/go-peer.sh
source scripts/go-peer.sh
if [ -n "${QTALK_GO_PEER:-}" ] && [ -x "$QTALK_GO_PEER" ]; then
  echo "using QTALK_GO_PEER=$QTALK_GO_PEER"
elif go_peer_build "$peer"; then
  export QTALK_GO_PEER="$peer"
  echo "built $QTALK_GO_PEER from $GO_PEER_SOURCE ($(go version | cut -d' ' -f3))"
else
  reason="$GO_PEER_REASON"
fi
if [ -n "$reason" ]; then
  if [ "$require" = 1 ]; then
    echo "FAILED: QTALK_REQUIRE_GO_PEER=1 but no Go peer: $reason"
    exit 1
  fi
  unset QTALK_GO_PEER
  echo "NOTICE: the Go-peer interop tests will be SKIPPED: $reason"
  echo "        To run them, put a checkout of github.com/progrium/qtalk-go at commit ${GO_PEER_PIN:0:7}"
  echo "        beside this repository (../qtalk-go) or name it with QTALK_GO_SRC=DIR:"
  echo "          git clone https://github.com/progrium/qtalk-go ../qtalk-go && git -C ../qtalk-go checkout ${GO_PEER_PIN:0:7}"
  echo "        (see interop/go/README.md)."
fi
export QTALK_REQUIRE_GO_PEER="$require"
tally="$PWD/target/go-peer-tally"
rm -f "$tally"
export QTALK_GO_PEER_TALLY="$tally"
# The P2P scenarios through NATs in network namespaces count themselves the same way.
netns_tally="$PWD/target/netns-tally"
rm -f "$netns_tally"
export QTALK_NETNS_TALLY="$netns_tally"

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo doc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

echo "== cargo test"
cargo test --workspace --locked

echo "== README quick start in a crate of its own (only qtalk and tokio)"
bash scripts/quickstart.sh

echo "== Python bindings (bindings/python: build, then pytest)"
EXAMPLES_PROFILE=debug bash bindings/python/test.sh

echo "== fuzz targets (30 s each)"
if cargo +nightly --version >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1; then
  bash fuzz/run.sh
else
  echo "NOTICE: fuzzing SKIPPED: it needs a nightly toolchain and cargo-fuzz (see fuzz/README.md)"
fi

ran=$(grep -c '^ran ' "$tally" 2>/dev/null || true)
skipped=$(grep -c '^skipped ' "$tally" 2>/dev/null || true)
echo "Go-peer interop: ${ran:-0} ran, ${skipped:-0} skipped"
ran=$(grep -c '^ran ' "$netns_tally" 2>/dev/null || true)
skipped=$(grep -c '^skipped ' "$netns_tally" 2>/dev/null || true)
echo "P2P through NATs (network namespaces): ${ran:-0} scenarios ran, ${skipped:-0} skipped"
