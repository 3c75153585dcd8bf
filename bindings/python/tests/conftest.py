import os
import pathlib
import subprocess
import sys

import pytest

import qtalk_rs

REPO = pathlib.Path(__file__).resolve().parents[3]


def examples_dir() -> pathlib.Path:
    """Where the qtalk crate's example binaries are (built by test.sh)."""
    if os.environ.get("QTALK_EXAMPLES_DIR"):
        return pathlib.Path(os.environ["QTALK_EXAMPLES_DIR"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "examples"


def example(name: str) -> str:
    path = examples_dir() / name
    if not path.exists():
        pytest.skip(f"{path} not built (run bindings/python/test.sh, or cargo build --release "
                    f"-p qtalk --example {name})")
    return str(path)


@pytest.fixture
def rust_upper_server():
    """The Rust example server on a free port: yields its address (host:port)."""
    proc = subprocess.Popen(
        [example("upper_server"), "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        proc.kill()
        proc.wait(timeout=10)


def upper_mux() -> qtalk_rs.RespondMux:
    """The classic example service, as upper_server.rs and the Go seed serve it."""
    mux = qtalk_rs.RespondMux()

    async def upper(call, text):
        return text.upper()

    def error(call, text):
        raise ValueError(f"{text} [{call.selector}]")

    mux.handle("Upper", upper)
    mux.handle("Error", error)
    return mux


@pytest.fixture
async def server():
    """A Python server of upper_mux() on a free port; extend it with server.mux.handle."""
    mux = upper_mux()
    srv = await qtalk_rs.start_server("tcp://127.0.0.1:0", mux)
    assert srv.mux is mux
    try:
        yield srv
    finally:
        srv.close()
        await srv.wait_closed()


@pytest.fixture
async def peer(server):
    """A peer connected to `server`."""
    async with qtalk_rs.connect(server.address) as p:
        yield p


PYTHON = sys.executable


def go_peer() -> str:
    """The Go reference peer (interop/go, built by scripts/test.sh as $QTALK_GO_PEER).

    Skips the test without it, unless QTALK_REQUIRE_GO_PEER=1 (then it fails). Each use is
    tallied in $QTALK_GO_PEER_TALLY, as the Rust tests do."""
    path = os.environ.get("QTALK_GO_PEER", "")
    found = bool(path) and os.path.exists(path)
    tally = os.environ.get("QTALK_GO_PEER_TALLY")
    if tally:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(tally, "a") as f:
            f.write(f"{'ran' if found else 'skipped'} python:{test}\n")
    if not found:
        if os.environ.get("QTALK_REQUIRE_GO_PEER") == "1":
            pytest.fail("QTALK_REQUIRE_GO_PEER=1 but QTALK_GO_PEER names no built Go peer")
        pytest.skip("SKIPPED: Go reference peer not available (QTALK_GO_PEER unset); run "
                    "scripts/test.sh")
    return path


def qtalk_cli() -> str:
    """The Rust `qtalk` command (built by test.sh next to the examples)."""
    path = examples_dir().parent / "qtalk"
    if not path.exists():
        pytest.skip(f"{path} not built (cargo build -p qtalk-cli --bin qtalk)")
    return str(path)
