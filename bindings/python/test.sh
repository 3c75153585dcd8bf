#!/usr/bin/env bash
# Builds the Python bindings and runs their tests (pytest), against the Rust example programs.
#
#   bindings/python/test.sh            # maturin develop --release into the venv, then pytest
#   bindings/python/test.sh --wheel    # build the abi3 wheel, pip install it, then pytest
#
# Environment: PYTHON (interpreter for a new venv, default python3), VENV (default
# bindings/python/.venv, created when missing), CARGO_TARGET_DIR (default <repo>/target),
# EXAMPLES_PROFILE (release or debug, of the Rust examples the tests run; default release),
# QTALK_GO_PEER (the Go reference peer for the cross-checks; they skip without it, or fail
# with QTALK_REQUIRE_GO_PEER=1).
# Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$here/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
start=$(date +%s)

wheel=0
if [[ "${1:-}" == "--wheel" ]]; then
    wheel=1
    shift
fi

if [[ ! -x "$venv/bin/python" ]]; then
    echo "== creating venv $venv"
    "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import maturin, pytest, pytest_asyncio" 2>/dev/null; then
    "$py" -m pip install -q --upgrade pip
    "$py" -m pip install -q "maturin>=1.9,<2" "pytest>=7" "pytest-asyncio>=0.23"
fi

echo "== building the extension ($( "$py" -V ))"
cd "$here"
if [[ $wheel == 1 ]]; then
    rm -rf "$here/dist"
    "$venv/bin/maturin" build --release --quiet -i "$py" -o "$here/dist"
    "$py" -m pip install -q --force-reinstall --no-deps "$here"/dist/*.whl
else
    VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --release --quiet
fi

echo "== cargo test (the bindings' Rust unit tests)"
cargo test --quiet --manifest-path "$here/Cargo.toml"

# EXAMPLES_PROFILE=debug reuses what the workspace's `cargo test` built (scripts/test.sh).
profile="${EXAMPLES_PROFILE:-release}"
echo "== building the Rust example programs and the qtalk command ($profile)"
programs=(-p qtalk --example upper_server --example upper_client -p qtalk-cli --bin qtalk)
if [[ $profile == release ]]; then
    (cd "$repo" && cargo build --release --quiet "${programs[@]}")
else
    (cd "$repo" && cargo build --quiet "${programs[@]}")
fi

echo "== pytest"
# From another directory with --wheel, so that the installed package is tested, not the sources.
cd "$here/tests"
QTALK_EXAMPLES_DIR="$CARGO_TARGET_DIR/$profile/examples" "$py" -m pytest -q -p no:cacheprovider \
    -c "$here/pyproject.toml" --rootdir "$here" "$@" .
echo "== python bindings: ok in $(( $(date +%s) - start )) s"
