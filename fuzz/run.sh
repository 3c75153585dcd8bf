#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 30) on its corpus, on a
# nightly toolchain with cargo-fuzz. New inputs go to a scratch folder; `--merge` adds the
# ones that reach new coverage to fuzz/corpus afterwards.
#
#   fuzz/run.sh                 # 30 s per target (what CI runs)
#   FUZZ_SECONDS=600 fuzz/run.sh session_input
#   fuzz/run.sh --merge frame_decode
set -euo pipefail
cd "$(dirname "$0")"
merge=0
if [ "${1:-}" = "--merge" ]; then merge=1; shift; fi
seconds="${FUZZ_SECONDS:-30}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_decode session_input rpc_frames json_decode cbor_decode)
cargo +nightly fuzz build -O >/dev/null
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t" "corpus/$t"
  log="$scratch/$t.log"
  if ! cargo +nightly fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz $t: FAILED (crash or leak; the input is under fuzz/artifacts/$t)"
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  echo "fuzz $t: ${seconds}s, ${execs:-?} execs, ${cov:-cov: ?}, 0 crashes"
  if [ "$merge" = 1 ]; then
    cargo +nightly fuzz run -O "$t" "corpus/$t" "$scratch/$t" -- -merge=1 >"$log.merge" 2>&1 ||
      { tail -n 20 "$log.merge"; echo "fuzz $t: merging into corpus/$t failed"; exit 1; }
  fi
done
