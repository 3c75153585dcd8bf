#!/usr/bin/env bash
# The whole test suite: formatting, lints, docs, and every test of the workspace, including the
# interop tests against the Go reference peer (interop/go) when it can be built.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Go reference peer (interop/go)"
peer="$PWD/target/qtalk-go-peer"
log="$PWD/target/go-build.log"
mkdir -p target
if [ -n "${QTALK_GO_PEER:-}" ] && [ -x "$QTALK_GO_PEER" ]; then
  echo "using QTALK_GO_PEER=$QTALK_GO_PEER"
elif ! command -v go >/dev/null 2>&1; then
  echo "NOTICE: Go is not installed: the Go-peer interop tests will be SKIPPED."
elif (cd interop/go && go build -o "$peer" . 2>"$log"); then
  export QTALK_GO_PEER="$peer"
  echo "built $QTALK_GO_PEER"
else
  echo "NOTICE: the Go reference peer could not be built, so the Go-peer interop tests will be SKIPPED."
  echo "        (the Go module proxy must serve github.com/progrium/qtalk-go; go build said:)"
  sed 's/^/        /' "$log" | head -n 5
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo doc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

echo "== cargo test"
cargo test --workspace --locked
