#!/usr/bin/env bash
# Builds the Python bindings and runs their tests against what a user would install.
#
#   bindings/python/test.sh              # CI: the abi3 wheel and the sdist (release build,
#                                        # manylinux tag checked), the wheel installed in a
#                                        # fresh venv, then pytest, mypy --strict on the
#                                        # examples and stubtest, all on the installed wheel
#   bindings/python/test.sh --develop    # while working: maturin develop (debug) into the
#                                        # tools venv, then pytest
#   bindings/python/test.sh --build-only # only the wheel and the sdist (into dist/)
#   bindings/python/test.sh --prebuilt   # the rest, with the wheel --build-only made
#
# Environment: PYTHON (interpreter for the venvs, default python3), VENV (the tools venv:
# maturin, ziglang; default bindings/python/.venv), CARGO_TARGET_DIR (default <repo>/target),
# EXAMPLES_PROFILE (release or debug, of the Rust examples the tests run; default release;
# PROGRAMS_BUILT=1: they are already built, as after the workspace's `cargo test`),
# QTALK_GO_PEER (the Go reference peer for the cross-checks; they skip without it, or fail with
# QTALK_REQUIRE_GO_PEER=1), MANYLINUX (the policy the wheel must meet, default manylinux2014,
# built with zig; "auto" builds with the system's linker and takes the tag its symbols allow).
# Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${VENV:-$here/.venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
start=$(date +%s)
step_t0=$start
step() {
    local now
    now=$(date +%s)
    [ -z "${step_name:-}" ] || echo "   ($step_name: $((now - step_t0)) s)"
    step_name="$1"
    step_t0=$now
    [ -z "$1" ] || echo "== $1"
}

develop=0
build=1
test=1
case "${1:-}" in
    --develop) develop=1; shift ;;
    --build-only) test=0; shift ;;
    --prebuilt) build=0; shift ;;
esac
policy="${MANYLINUX:-manylinux2014}"

step "tools venv ($venv)"
if [[ ! -x "$venv/bin/python" ]]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
tools=("maturin>=1.9,<2")
[[ $develop == 1 ]] && tools+=("pytest>=7" "pytest-asyncio>=0.23")
[[ $develop == 0 && $build == 1 && $policy != auto ]] && tools+=("ziglang>=0.13,<0.16")
[[ $develop == 0 && $build == 1 ]] && tools+=("auditwheel>=6")
if ! "$py" -m pip install -q --disable-pip-version-check "${tools[@]}"; then
    echo "FAILED: cannot install ${tools[*]} into $venv"
    exit 1
fi

cd "$here"
if [[ $develop == 1 ]]; then
    step "maturin develop (debug)"
    VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop --quiet
    test_py="$py"
elif [[ $build == 1 ]]; then
    step "the abi3 wheel ($policy) and the sdist (release build)"
    rm -rf "$here/dist"
    zig=()
    [[ $policy != auto ]] && zig=(--zig)
    # maturin finds zig as `python3 -m ziglang`, with the tools venv first on PATH. With a
    # policy it audits the wheel's symbols and libraries, and refuses one that breaks it.
    PATH="$venv/bin:$PATH" "$venv/bin/maturin" build --release --quiet "${zig[@]}" \
        --compatibility "$policy" -i "$py" -o "$here/dist" 2>&1 | { grep -v '^Ignoring\|^Looking in' || true; }
    "$venv/bin/maturin" sdist -o "$here/dist" > /dev/null
    wheel=$(ls "$here"/dist/*.whl)
    ls -l "$here"/dist
    case "$(basename "$wheel")" in
        *-cp39-abi3-manylinux*) ;;
        *) echo "FAILED: $wheel is not a manylinux abi3 wheel"; exit 1 ;;
    esac
    ls "$here"/dist/*.tar.gz > /dev/null
    # auditwheel's own reading of the tag (glibc symbol versions, libraries linked).
    "$venv/bin/auditwheel" show "$wheel" | tee "$here/dist/auditwheel.txt"
    if [[ $policy != auto ]]; then
        tag="${policy/manylinux2014/manylinux_2_17}"
        grep -q "consistent with the following platform tag:.*\"${tag}_x86_64\"" \
            <(tr -d '\n' < "$here/dist/auditwheel.txt" | tr -s ' ') \
            || { echo "FAILED: auditwheel does not find $wheel consistent with $tag"; exit 1; }
        echo "wheel tag: $tag (maturin's audit and auditwheel show agree)"
    fi
fi
if [[ $test == 0 ]]; then
    step ""
    echo "== python wheel: built in $(( $(date +%s) - start )) s"
    exit 0
fi
if [[ $develop == 0 ]]; then
    wheel=$(ls "$here"/dist/*.whl)
    step "a fresh venv with the wheel installed"
    fresh="$CARGO_TARGET_DIR/python-wheel-venv"
    rm -rf "$fresh"
    "${PYTHON:-python3}" -m venv "$fresh"
    "$fresh/bin/python" -m pip install -q --disable-pip-version-check "$wheel" \
        "pytest>=7" "pytest-asyncio>=0.23" "mypy>=1.10"
    test_py="$fresh/bin/python"
    installed=$(cd / && "$test_py" -c 'import qtalk_rs; print(qtalk_rs.__file__)')
    echo "installed: $installed"
    [[ $installed == "$fresh/"* ]] \
        || { echo "FAILED: the tests would not import the installed wheel"; exit 1; }
fi

# EXAMPLES_PROFILE=debug reuses what the workspace's `cargo test` built (scripts/test.sh).
profile="${EXAMPLES_PROFILE:-release}"
step "the Rust example programs and the qtalk command ($profile)"
programs=(-p qtalk --example upper_server --example upper_client -p qtalk-cli --bin qtalk)
if [[ ${PROGRAMS_BUILT:-0} == 1 ]]; then
    for p in "examples/upper_server" "examples/upper_client" "qtalk"; do
        [[ -x "$CARGO_TARGET_DIR/$profile/$p" ]] \
            || { echo "FAILED: PROGRAMS_BUILT=1 but $CARGO_TARGET_DIR/$profile/$p is missing"; exit 1; }
    done
elif [[ $profile == release ]]; then
    (cd "$repo" && cargo build --release --quiet "${programs[@]}")
else
    (cd "$repo" && cargo build --quiet "${programs[@]}")
fi

step "pytest"
# From the tests' directory, so that the installed package is tested, not the sources.
cd "$here/tests"
QTALK_EXAMPLES_DIR="$CARGO_TARGET_DIR/$profile/examples" "$test_py" -m pytest -q \
    -p no:cacheprovider -c "$here/pyproject.toml" --rootdir "$here" "$@" .

if [[ $develop == 0 ]]; then
    step "mypy --strict on the examples; stubtest on _native.pyi"
    cd "$here"
    "$test_py" -m mypy --strict --no-incremental examples/
    (cd / && "$test_py" -m mypy.stubtest qtalk_rs._native)
fi
step ""
echo "== python bindings: ok in $(( $(date +%s) - start )) s"
