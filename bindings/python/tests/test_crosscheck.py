"""The interoperability check in every direction: `python -m qtalk_rs interop` and
`python -m qtalk_rs check` against the Go reference and the Rust `qtalk` command, both codecs.
"""

import os
import shlex
import subprocess
import sys

import pytest

import qtalk_rs

from conftest import go_peer, qtalk_cli

PY_INTEROP = f"{shlex.quote(sys.executable)} -m qtalk_rs interop"
CHECK_LINES = [
    "Error: test",
    "Error: not found: /BadSelector",
    "Unary: 100 100",
    "Unary: true true",
    "Unary: hello hello",
    "Unary: map[foo:bar] map[foo:bar]",
    "Unary: [1 2 3] [1 2 3]",
    "Stream: 100",
    "Stream: true",
    "Stream: hello",
    "Stream: map[foo:bar]",
    "Stream: [1 2 3]",
    "Bytes: 1",
    "Bytes: 1024",
    "Bytes: 1048576",
]
CODECS = ["cbor", "json"]


def run(argv, codec, timeout=60):
    env = dict(os.environ, QTALK_CODEC=codec)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{argv} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout.splitlines()


def python_check(target, codec, *extra):
    return run([sys.executable, "-m", "qtalk_rs", "check", *extra, target], codec)


@pytest.mark.parametrize("codec", CODECS)
def test_go_check_against_python_interop(codec):
    lines = run([go_peer(), "-mode", "check", "-cmd", PY_INTEROP], codec)
    assert [l for l in lines if l in CHECK_LINES] == CHECK_LINES


@pytest.mark.parametrize("codec", CODECS)
def test_python_check_against_go_interop(codec):
    lines = python_check(f"{shlex.quote(go_peer())} -mode interop", codec)
    assert lines[:-1] == CHECK_LINES
    assert lines[-1].startswith("ok: 15 checks passed in ") and f"codec {codec}" in lines[-1]


@pytest.mark.parametrize("codec", CODECS)
def test_python_check_against_rust_interop(codec):
    lines = python_check(f"{shlex.quote(qtalk_cli())} interop", codec)
    assert lines[:-1] == CHECK_LINES


@pytest.mark.parametrize("codec", CODECS)
def test_rust_check_against_python_interop(codec):
    lines = run([qtalk_cli(), "check", PY_INTEROP], codec)
    assert lines[:-1] == CHECK_LINES
    assert lines[-1].startswith("ok: 15 checks passed")


@pytest.mark.parametrize("codec", CODECS)
def test_python_checks_itself(codec):
    lines = run([sys.executable, "-m", "qtalk_rs", "check"], codec)
    assert lines[:-1] == CHECK_LINES


def listening(argv, codec):
    """Starts a server printing `listening on URL` on stderr; returns (process, URL)."""
    env = dict(os.environ, QTALK_CODEC=codec)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if line.startswith("listening on "):
            return proc, line.split()[-1]
    proc.kill()
    raise AssertionError(f"{argv} did not print its address")


@pytest.mark.parametrize("scheme", ["tcp", "quic", "wss"])
@pytest.mark.parametrize("codec", CODECS)
def test_python_check_against_a_listening_rust_interop(scheme, codec):
    proc, url = listening([qtalk_cli(), "interop", "--listen", f"{scheme}://127.0.0.1:0"], codec)
    try:
        lines = python_check(url, codec, "--insecure")
        assert lines[:-1] == CHECK_LINES
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("scheme", ["tcp", "quic", "tls"])
@pytest.mark.parametrize("codec", CODECS)
def test_rust_check_against_a_listening_python_interop(scheme, codec):
    proc, url = listening([sys.executable, "-m", "qtalk_rs", "interop", "--listen",
                           f"{scheme}://127.0.0.1:0"], codec)
    try:
        lines = run([qtalk_cli(), "check", "--insecure", url], codec)
        assert lines[:-1] == CHECK_LINES
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("codec", CODECS)
def test_go_check_against_a_listening_python_interop(codec):
    peer = go_peer()
    proc, url = listening([sys.executable, "-m", "qtalk_rs", "interop", "--listen",
                           "tcp://127.0.0.1:0"], codec)
    try:
        lines = run([peer, "-mode", "check", "-dial", url[len("tcp://"):]], codec)
        assert [l for l in lines if l in CHECK_LINES] == CHECK_LINES
    finally:
        proc.kill()
        proc.wait(10)


def test_check_reports_a_wrong_peer():
    """A peer whose Unary answers something else fails the check with exit status 1."""
    script = (
        "import asyncio, qtalk_rs\n"
        "from qtalk_rs import _interop as i\n"
        "async def main():\n"
        "    m = qtalk_rs.RespondMux()\n"
        "    m.handle('Error', qtalk_rs.HandlerFunc(i._error))\n"
        "    m.handle('Unary', qtalk_rs.HandlerFunc(lambda r, c: 'wrong'))\n"
        "    p = await qtalk_rs.connect_stdio(codec='cbor', mux=m)\n"
        "    await p.wait_closed()\n"
        "asyncio.run(main())\n"
    )
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    out = subprocess.run([sys.executable, "-m", "qtalk_rs", "check", "--codec", "cbor", cmd],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    assert out.stdout.splitlines() == ["Error: test", "Error: not found: /BadSelector"]
    assert "FAILED: Unary(100): returned wrong instead of the value sent" in out.stderr


def test_check_reports_an_unreachable_peer():
    out = subprocess.run([sys.executable, "-m", "qtalk_rs", "check", "tcp://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out
    assert "cannot reach the peer" in out.stderr


def test_values_print_as_go_prints_them():
    from qtalk_rs._interop import go_format, same_value

    assert go_format({"foo": "bar", "a": [1, True, None]}) == "map[a:[1 true <nil>] foo:bar]"
    assert go_format({2: "b", 10: "a"}) == "map[2:b 10:a]"
    assert go_format(b"\x01\x02") == "[1 2]"
    for f, text in [(100.0, "100"), (1e6, "1e+06"), (0.00001, "1e-05"), (-1.5, "-1.5"),
                    (123456.0, "123456"), (1234567.0, "1.234567e+06"), (float("nan"), "NaN")]:
        assert go_format(f) == text
    assert same_value(100, 100.0) and same_value({"a": [1]}, {"a": [1.0]})
    assert not same_value(True, 1) and not same_value("1", 1) and not same_value([1], [1, 2])


@pytest.mark.parametrize("codec", CODECS)
async def test_go_peer_answers_calls_with_metadata_and_deadline(codec, monkeypatch):
    """Go ignores the call header's Meta and Deadline: the same answers as without them."""
    peer = go_peer()
    monkeypatch.setenv("QTALK_CODEC", codec)
    mux = qtalk_rs.RespondMux()

    async def unary_back(responder, call):
        await responder.ret(await call.receive())

    mux.handle("Unary", qtalk_rs.HandlerFunc(unary_back))
    async with qtalk_rs.connect_command([peer, "-mode", "interop"], codec=codec, mux=mux) as p:
        for kw in [{}, {"timeout": 10, "metadata": {"authorization": "Bearer x"}}]:
            assert await p.call_value("Unary", {"foo": "bar"}, **kw) == {"foo": "bar"}
            with pytest.raises(qtalk_rs.RemoteError) as info:
                await p.call_value("Error", "boom", **kw)
            assert info.value.text == "boom"
