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

# Stage timing: `stage NAME` ends the running stage and starts the next; the table of every
# stage's wall time is printed when the script ends, passing or failing.
stage_rows=()
stage_name=""
stage_t0=0
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
run_t0=$(now_ms)
stage() {
  local now
  now=$(now_ms)
  if [ -n "$stage_name" ]; then
    stage_rows+=("$(printf '%-58s %7s' "$stage_name" "$(secs $((now - stage_t0)))")")
  fi
  stage_name="$1"
  stage_t0=$now
  [ -z "$1" ] || echo "== $1"
}
py_wheel_pid=""
stage_report() {
  local rc=$? now row
  [ -z "$py_wheel_pid" ] || kill "$py_wheel_pid" 2>/dev/null || true
  stage ""
  now=$(now_ms)
  echo
  echo "Stage timings (wall seconds):"
  if [ -n "${QTALK_CI_SETUP_MS:-}" ]; then
    printf '  %-58s %7s\n' ".ci/run: installs before the suite" "$(secs "$QTALK_CI_SETUP_MS")"
  fi
  for row in "${stage_rows[@]}"; do echo "  $row"; done
  printf '  %-58s %7s\n' "total (scripts/test.sh)" "$(secs $((now - run_t0)))"
  if [ -n "${QTALK_CI_START_MS:-}" ]; then
    printf '  %-58s %7s\n' "total (.ci/run)" "$(secs $((now - QTALK_CI_START_MS)))"
  fi
  [ "$rc" = 0 ] || echo "scripts/test.sh FAILED (exit $rc)"
}
trap stage_report EXIT

require="${QTALK_REQUIRE_GO_PEER:-0}"
stage "Go reference peer (interop/go)"
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

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "cargo doc (broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

stage "cargo test"
cargo test --workspace --locked
# The stages below run the programs this build made (the qtalk command, the examples) rather
# than building them again with other feature sets.
export QTALK_BIN="$PWD/target/debug/qtalk"

# The Python bindings' wheel is a release build of about 160 crates. It compiles in the
# background from here on, beside the stages that follow (the quick start, the JavaScript
# package, the fuzzers' fixed-length runs), and the Python stage waits for it.
py_wheel_log="$PWD/target/python-wheel-build.log"
nice -n 10 bash bindings/python/test.sh --build-only >"$py_wheel_log" 2>&1 &
py_wheel_pid=$!
# The fuzz targets (a release build with sanitizers, on nightly) compile beside it, also at a
# lower priority than the stages in front, which use the time the JavaScript tests spend
# waiting on their processes.
fuzz_build_log="$PWD/target/fuzz-build.log"
fuzz_build_pid=""
if cargo +nightly --version >/dev/null 2>&1; then
  nice -n 10 bash fuzz/run.sh --build-only >"$fuzz_build_log" 2>&1 &
  fuzz_build_pid=$!
fi

stage "README quick start in a crate of its own (only qtalk and tokio)"
bash scripts/quickstart.sh

# ---- JavaScript package (bindings/js) ------------------------------------------------------
# Build, `npm pack` contents, node --test: codecs and sessions against the Go recordings, RPC,
# the WebTransport mapping, the check sequence against `qtalk interop` and the Go peer as
# processes, and headless Chromium against the Rust server. .ci/run installs its npm packages
# and Chromium.
stage "JavaScript package (bindings/js: build, node --test, Chromium)"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  bash bindings/js/test.sh
else
  echo "NOTICE: the JavaScript package's tests SKIPPED: node and npm are not installed"
fi
# ---- end of JavaScript package --------------------------------------------------------------

# In CI each target replays its corpus and explores for 10 s: a regression check that stays
# cheap. Fuzzing proper runs longer, by hand: FUZZ_SECONDS=600 fuzz/run.sh --merge.
stage "fuzz targets (${FUZZ_SECONDS:=10} s each)"
if [ -n "$fuzz_build_pid" ]; then
  fuzz_build_status=0
  wait "$fuzz_build_pid" || fuzz_build_status=$?
  fuzz_build_pid=""
  [ "$fuzz_build_status" = 0 ] || { cat "$fuzz_build_log"; echo "FAILED: the fuzz targets did not build"; exit 1; }
  FUZZ_SECONDS="$FUZZ_SECONDS" bash fuzz/run.sh
else
  echo "NOTICE: fuzzing SKIPPED: it needs a nightly toolchain (see fuzz/README.md)"
fi

# The abi3 wheel (built in the background since "cargo test"; the bindings' only release build)
# installed in a fresh venv, then pytest, mypy --strict and stubtest against it; it prints its
# own steps' times.
stage "Python bindings (bindings/python: wheel, fresh venv, pytest, mypy, stubtest)"
py_wheel_status=0
wait "$py_wheel_pid" || py_wheel_status=$?
py_wheel_pid=""
cat "$py_wheel_log"
[ "$py_wheel_status" = 0 ] || { echo "FAILED: the Python wheel did not build"; exit 1; }
EXAMPLES_PROFILE=debug PROGRAMS_BUILT=1 bash bindings/python/test.sh --prebuilt

ran=$(grep -c '^ran ' "$tally" 2>/dev/null || true)
skipped=$(grep -c '^skipped ' "$tally" 2>/dev/null || true)
echo "Go-peer interop: ${ran:-0} ran, ${skipped:-0} skipped"
ran=$(grep -c '^ran ' "$netns_tally" 2>/dev/null || true)
skipped=$(grep -c '^skipped ' "$netns_tally" 2>/dev/null || true)
echo "P2P through NATs (network namespaces): ${ran:-0} scenarios ran, ${skipped:-0} skipped"
