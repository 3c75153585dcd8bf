import asyncio
import subprocess
import sys
import textwrap

import pytest

import qtalk_rs


async def test_serve_until_cancelled():
    mux = qtalk_rs.RespondMux()
    mux.handle("Upper", lambda call, s: s.upper())
    srv = await qtalk_rs.start_server("tcp://127.0.0.1:0", mux)
    forever = asyncio.create_task(srv.serve_forever())
    async with qtalk_rs.connect(srv.address) as p:
        assert await p.call("Upper", "a") == "A"
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever
    await asyncio.wait_for(srv.wait_closed(), 5)
    assert srv.closed
    with pytest.raises(OSError):
        await qtalk_rs.connect(srv.address)


async def test_graceful_shutdown_lets_calls_finish():
    mux = qtalk_rs.RespondMux()

    async def slow(call):
        await asyncio.sleep(0.2)
        return "done"

    mux.handle("Slow", slow)
    srv = await qtalk_rs.start_server("tcp://127.0.0.1:0", mux)
    p = await qtalk_rs.connect(srv.address)
    call = asyncio.create_task(p.call("Slow"))
    await asyncio.sleep(0.05)
    await srv.shutdown(grace=5)
    assert await call == "done"
    p.close()


EXIT_SCRIPT = textwrap.dedent("""\
    import asyncio, sys, qtalk_rs

    async def main():
        mux = qtalk_rs.RespondMux()

        async def slow(call, i):
            await asyncio.sleep(0.001 * (i % 5))
            return i

        mux.handle("Slow", slow)
        srv = await qtalk_rs.start_server("tcp://127.0.0.1:0", mux)
        peer = await qtalk_rs.connect(srv.address)
        # calls finishing, pending and abandoned while the program ends
        calls = [asyncio.create_task(peer.call("Slow", i)) for i in range(200)]
        await asyncio.sleep(0.002)
        print("exiting", flush=True)

    asyncio.run(main())
""")


EXITS = 100


def test_exit_with_calls_in_flight(tmp_path):
    """No crash when the interpreter exits while the runtime is busy: 100 exits, four at a
    time, each with 200 calls finishing, pending and abandoned."""
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    done = 0
    while done < EXITS:
        batch = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(min(4, EXITS - done))]
        for proc in batch:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, (proc.returncode, err[-2000:])
            assert out == "exiting\n"
        done += len(batch)
