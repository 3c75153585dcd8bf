#!/usr/bin/env bash
# Runs every fuzz target (or those named) for FUZZ_SECONDS each (default 30) on its corpus, on a
# nightly toolchain, as many at once as the machine has cores (FUZZ_JOBS). New inputs go to a
# scratch folder; `--merge` adds the ones that reach new coverage to fuzz/corpus afterwards.
#
#   fuzz/run.sh                 # 30 s per target
#   FUZZ_SECONDS=600 fuzz/run.sh session_input
#   fuzz/run.sh --merge frame_decode
#   fuzz/run.sh --build-only    # only build the targets
#
# The targets are built here with the flags cargo-fuzz passes (libFuzzer's coverage
# instrumentation and AddressSanitizer; `--target` set so that they skip build scripts and
# proc macros), into the folder cargo-fuzz uses, so `cargo fuzz run` works on the same build.
# CI thereby needs no cargo-fuzz, whose build from source took a fresh machine a minute and a
# half per run.
set -euo pipefail
cd "$(dirname "$0")"
merge=0
build_only=0
if [ "${1:-}" = "--merge" ]; then merge=1; shift; fi
if [ "${1:-}" = "--build-only" ]; then build_only=1; shift; fi
seconds="${FUZZ_SECONDS:-30}"
jobs="${FUZZ_JOBS:-$(nproc)}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decode session_input rpc_frames json_decode cbor_decode)

host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
RUSTFLAGS+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
RUSTFLAGS+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
RUSTFLAGS+=" -Cllvm-args=-sanitizer-coverage-stack-depth -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
RUSTFLAGS+=" --cfg fuzzing -Zsanitizer=address -Ccodegen-units=1"
export RUSTFLAGS
cargo +nightly build --quiet --locked --release --target "$host" --bins
bin="target/$host/release"
[ "$build_only" = 0 ] || exit 0

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# One target: fuzz for $seconds, then report (and merge).
fuzz_one() {
  local t="$1" log="$scratch/$1.log"
  mkdir -p "$scratch/$t" "corpus/$t" "artifacts/$t"
  if ! "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$seconds" -rss_limit_mb=2048 \
      -print_final_stats=1 "$scratch/$t" "corpus/$t" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz $t: FAILED (crash or leak; the input is under fuzz/artifacts/$t)"
    return 1
  fi
  local execs cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  echo "fuzz $t: ${seconds}s, ${execs:-?} execs, ${cov:-cov: ?}, 0 crashes"
  if [ "$merge" = 1 ]; then
    "$bin/$t" -merge=1 "corpus/$t" "$scratch/$t" >"$log.merge" 2>&1 ||
      { tail -n 20 "$log.merge"; echo "fuzz $t: merging into corpus/$t failed"; return 1; }
  fi
}

pids=()
failed=0
for t in "${targets[@]}"; do
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
  fuzz_one "$t" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
exit "$failed"
