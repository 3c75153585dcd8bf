import asyncio

import pytest

import qtalk_rs


async def test_handler_streams_values(server, peer):
    async def count(call, n):
        stream = await call.continue_with("start")
        for i in range(n):
            await stream.send(i)
        stream.close()

    server.mux.handle("Count", count)
    async with await peer.call_raw("Count", 5) as resp:
        assert resp.continued
        assert [v async for v in resp] == ["start", 0, 1, 2, 3, 4]


async def test_both_directions(server, peer):
    async def echo(call):
        stream = await call.continue_with()
        async for v in stream:
            await stream.send({"echo": v})
        await stream.close_write()

    server.mux.handle("Echo", echo)
    resp = await peer.call_raw("Echo")
    assert await resp.receive() is None
    for v in ["a", 1, [2]]:
        await resp.send(v)
        assert await resp.receive() == {"echo": v}
    await resp.close_write()
    with pytest.raises(EOFError):
        await resp.receive()
    resp.close()


async def test_unary_through_call_raw(peer):
    resp = await peer.call_raw("Upper", "x")
    assert not resp.continued
    assert [v async for v in resp] == ["X"]


async def test_close_interrupts_receive(server, peer):
    async def forever(call):
        stream = await call.continue_with(0)
        await asyncio.sleep(30)

    server.mux.handle("Forever", forever)
    resp = await peer.call_raw("Forever")
    assert await resp.receive() == 0
    pending = asyncio.create_task(resp.receive())
    await asyncio.sleep(0.05)
    resp.close()
    with pytest.raises(EOFError):
        await asyncio.wait_for(pending, 5)


async def test_continue_twice(server, peer):
    async def twice(call):
        stream = await call.continue_with(1)
        try:
            await call.continue_with(2)
            await stream.send("continued twice")
        except qtalk_rs.QtalkError as e:
            # After a continue the return value is ignored: report on the stream.
            await stream.send(str(e))
        await stream.close_write()
        return "ignored"

    server.mux.handle("Twice", twice)
    resp = await peer.call_raw("Twice")
    assert [v async for v in resp] == [1, "rpc: already responded"]
