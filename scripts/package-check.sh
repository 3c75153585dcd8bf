#!/usr/bin/env bash
# Packages every crate as `cargo publish` would (a dry run: nothing is uploaded), then runs each
# packaged crate's own tests from its unpacked package, the crates depending on each other's
# packages rather than on the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
cargo publish --workspace --dry-run --locked
pkg="$repo/target/package"
mkdir -p "$pkg/.cargo"
{
  echo "[patch.crates-io]"
  for d in "$pkg"/*-0.1.0; do
    name="$(basename "$d" -0.1.0)"
    echo "$name = { path = \"$d\" }"
  done
} >"$pkg/.cargo/config.toml"
export CARGO_TARGET_DIR="$repo/target/package-tests"
for d in "$pkg"/qtalk-mux-proto-0.1.0 "$pkg"/qtalk-mux-0.1.0 "$pkg"/qtalk-macros-0.1.0 \
  "$pkg"/qtalk-0.1.0 "$pkg"/qtalk-cli-0.1.0; do
  echo "== tests of the package $(basename "$d")"
  log="$CARGO_TARGET_DIR/$(basename "$d").log"
  mkdir -p "$CARGO_TARGET_DIR"
  if ! (cd "$d" && cargo test -q >"$log" 2>&1); then
    tail -n 30 "$log"
    echo "package-check: $(basename "$d") failed"
    exit 1
  fi
  grep -E "^test result" "$log" | awk '{p += $4; f += $6} END {print "   " p " passed, " f " failed"}'
done
echo "package-check: every package builds and passes its own tests"
