import asyncio

import pytest

import qtalk_rs


async def test_wait_for_cancels_on_the_wire(server, peer):
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow(call):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "too late"

    server.mux.handle("Slow", slow)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(peer.call("Slow"), 0.3)
    assert started.is_set()
    # dropping the call closed its channel; the server cancelled the handler's task
    await asyncio.wait_for(cancelled.wait(), 5)
    assert await peer.call("Upper", "after") == "AFTER"


async def test_task_cancel(server, peer):
    async def hang(call):
        await asyncio.sleep(30)

    server.mux.handle("Hang", hang)
    task = asyncio.create_task(peer.call("Hang"))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await peer.call("Upper", "x") == "X"


async def test_cancel_rust_call(rust_upper_server):
    # A call that cannot complete in time: the Rust server is stopped, not slow, so use a
    # zero timeout; the point is that cancelling leaves the peer usable.
    async with qtalk_rs.connect(f"tcp://{rust_upper_server}") as p:
        for _ in range(20):
            try:
                await asyncio.wait_for(p.call("Upper", "x"), 0.0001)
            except asyncio.TimeoutError:
                pass
        assert await p.call("Upper", "x") == "X"
