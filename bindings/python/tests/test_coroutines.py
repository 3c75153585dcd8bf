"""Every awaitable is a coroutine: tasks and TaskGroups take it, and nothing starts before it
is awaited."""

import asyncio
import collections.abc
import sys

import pytest

import qtalk_rs


async def test_create_task_and_gather(peer):
    coro = peer.call("Upper", "a")
    assert asyncio.iscoroutine(coro)
    assert isinstance(coro, collections.abc.Coroutine)
    task = asyncio.create_task(coro)
    assert await task == "A"
    results = await asyncio.gather(*(peer.call("Upper", str(i)) for i in range(50)))
    assert results == [str(i) for i in range(50)]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is Python 3.11+")
async def test_task_group_of_1000_calls(server, peer):
    async def echo(call, i):
        return i

    server.mux.handle("Echo", echo)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(peer.call("Echo", i)) for i in range(1000)]
    assert [t.result() for t in tasks] == list(range(1000))


async def test_nothing_starts_before_awaited(server, peer):
    ran = []

    async def note(call, x):
        ran.append(x)
        return x

    server.mux.handle("Note", note)
    pending = peer.call("Note", "early")
    assert await peer.call("Note", "barrier") == "barrier"
    assert ran == ["barrier"]
    pending.close()  # never awaited: never sent
    assert await peer.call("Note", "again") == "again"
    assert ran == ["barrier", "again"]
    late = peer.call("Note", "late")
    assert await late == "late"
    with pytest.raises(RuntimeError, match="already awaited"):
        await late


async def test_connect_and_start_server_as_context_managers(server):
    async with qtalk_rs.connect(server.address) as p:
        assert await p.call("Upper", "x") == "X"
    assert p.closed
    # `await connect(...)` keeps working, and so does `async with await connect(...)`.
    p2 = await qtalk_rs.connect(server.address)
    async with p2:
        assert await p2.call("Upper", "y") == "Y"
    async with qtalk_rs.start_server("tcp://127.0.0.1:0", qtalk_rs.RespondMux()) as srv:
        assert srv.address.startswith("tcp://127.0.0.1:")
    assert srv.closed


def test_coroutines_made_outside_a_loop():
    """connect() and start_server() can be made before a loop runs (asyncio.run(connect()))."""
    mux = qtalk_rs.RespondMux()
    mux.handle("Upper", lambda call, s: s.upper())
    starting = qtalk_rs.start_server("tcp://127.0.0.1:0", mux)

    async def main():
        srv = await starting
        try:
            async with qtalk_rs.connect(srv.address) as p:
                return await p.call("Upper", "z")
        finally:
            srv.close()

    assert asyncio.run(main()) == "Z"


async def test_options_are_keyword_only(server):
    with pytest.raises(TypeError):
        qtalk_rs.connect(server.address, "json")  # type: ignore[misc]
    with pytest.raises(TypeError):
        qtalk_rs.start_server("tcp://127.0.0.1:0", qtalk_rs.RespondMux(), "json")  # type: ignore[misc]
    with pytest.raises(TypeError):
        qtalk_rs.connect_stdio("json")  # type: ignore[misc]
