"""Python with the Rust example programs (crates/qtalk/examples/upper_*.rs)."""

import asyncio
import pathlib
import subprocess
import sys
import textwrap

import pytest

import qtalk_rs
from conftest import example, upper_mux


async def test_python_calls_rust_server(rust_upper_server):
    async with qtalk_rs.connect(f"tcp://{rust_upper_server}") as p:
        assert await p.call("Upper", "hello world") == "HELLO WORLD"
        with pytest.raises(qtalk_rs.RemoteError) as info:
            await p.call("Error", "user error")
        assert str(info.value) == "remote: user error [/Error]"
        with pytest.raises(qtalk_rs.RemoteError, match="fn: expected 1 params, got 2"):
            await p.call("Upper", "a", "b")


async def test_rust_client_calls_python_server():
    async with qtalk_rs.start_server("tcp://127.0.0.1:0", upper_mux()) as srv:
        addr = srv.address[len("tcp://"):]
        proc = await asyncio.create_subprocess_exec(
            example("upper_client"), addr, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert out.decode().splitlines() == ["HELLO WORLD", "remote: user error [/Error]"]


async def test_ten_line_client(rust_upper_server, tmp_path):
    """The README's client, as a script (its first Python block, with the server's address)."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert "tcp://127.0.0.1:9999" in code
    script = tmp_path / "client.py"
    script.write_text(code.replace("tcp://127.0.0.1:9999", f"tcp://{rust_upper_server}"))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "HELLO WORLD\nremote: user error [/Error]\n"


async def test_command_over_stdio():
    """A spawned Python program serving on its stdio (connect_command / connect_stdio)."""
    child = textwrap.dedent("""\
        import asyncio, qtalk_rs

        async def main():
            mux = qtalk_rs.RespondMux()
            mux.handle("Upper", lambda call, s: s.upper())
            peer = await qtalk_rs.connect_stdio(mux=mux)
            await peer.wait_closed()

        asyncio.run(main())
    """)
    async with qtalk_rs.connect_command([sys.executable, "-c", child]) as p:
        assert await asyncio.wait_for(p.call("Upper", "piped"), 30) == "PIPED"
