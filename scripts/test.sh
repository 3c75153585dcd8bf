#!/usr/bin/env bash
# The whole test suite: formatting, lints, docs, and every test of the workspace, including the
# interop tests against the Go reference peer (interop/go) when it can be built.
#
# QTALK_GO_PEER=PATH       use an already built Go peer instead of building interop/go.
# QTALK_REQUIRE_GO_PEER=1  a Go peer that is missing or cannot be built fails the run (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."

require="${QTALK_REQUIRE_GO_PEER:-0}"
echo "== Go reference peer (interop/go)"
peer="$PWD/target/qtalk-go-peer"
log="$PWD/target/go-build.log"
mkdir -p target
reason=""
if [ -n "${QTALK_GO_PEER:-}" ] && [ -x "$QTALK_GO_PEER" ]; then
  echo "using QTALK_GO_PEER=$QTALK_GO_PEER"
elif ! command -v go >/dev/null 2>&1; then
  reason="Go is not installed"
elif (cd interop/go && go build -o "$peer" . >"$log" 2>&1); then
  export QTALK_GO_PEER="$peer"
  echo "built $QTALK_GO_PEER ($(go version | cut -d' ' -f3))"
else
  # The first line that is not download progress says why (e.g. "... 403 Forbidden").
  why="$(grep -v '^go: downloading ' "$log" | head -n 1)"
  reason="go build of interop/go failed: ${why:-see $log}"
fi
if [ -n "$reason" ]; then
  if [ "$require" = 1 ]; then
    echo "FAILED: QTALK_REQUIRE_GO_PEER=1 but no Go peer: $reason"
    exit 1
  fi
  unset QTALK_GO_PEER
  echo "NOTICE: the Go-peer interop tests will be SKIPPED: $reason"
  echo "        (a proxy that refuses github.com/progrium/qtalk-go: see README, Interop with qtalk-go)"
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
