"""Receives, reads and iteration cancelled while they wait lose nothing: what arrives goes to
the next one, in order (as with asyncio.Queue and StreamReader).

The senders pause now and then: a loop's timers fire no sooner than its selector wakes (about
a millisecond), so only a receive that waits longer than that is cancelled by a tiny
`wait_for` timeout; the tests count those cancellations to show they happened."""

import asyncio
import hashlib

import qtalk_rs

VALUES = 10_000
MIB = 64


async def test_values_survive_wait_for_timeouts(server, peer):
    async def count(call, n):
        stream = await call.continue_with(None)
        for i in range(n):
            await stream.send(i)
            if i % 50 == 0:
                # The receiver catches up and waits (and times out).
                await asyncio.sleep(0.002)
        await stream.close_write()

    server.mux.handle("Count", count)
    resp = await peer.call_raw("Count", VALUES)
    assert await resp.receive() is None
    got = []
    timeouts = 0
    while True:
        try:
            got.append(await asyncio.wait_for(resp.__anext__(), 0.00001))
        except asyncio.TimeoutError:
            timeouts += 1
        except StopAsyncIteration:
            break
    assert got == list(range(VALUES))
    # The loop did cancel receives while they waited (else it tested nothing).
    assert timeouts > 0
    resp.close()


async def test_receive_cancelled_by_task_cancel(server, peer):
    gate = asyncio.Event()

    async def later(call):
        stream = await call.continue_with("first")
        await gate.wait()
        await stream.send("second")
        await stream.close_write()

    server.mux.handle("Later", later)
    resp = await peer.call_raw("Later")
    assert await resp.receive() == "first"
    task = asyncio.create_task(resp.receive())
    await asyncio.sleep(0)
    task.cancel()
    gate.set()
    try:
        await task
        # The value came before the cancel took: then it was the task's.
        return
    except asyncio.CancelledError:
        pass
    assert await resp.receive() == "second"


async def test_bytes_survive_wait_for_timeouts(server, peer):
    block = bytes(range(256)) * 256  # 64 KiB, not all alike
    size = MIB << 20

    async def source(call):
        stream = await call.continue_with(None)
        for i in range(size // len(block)):
            await stream.write(block)
            if i % 16 == 0:
                await asyncio.sleep(0.002)  # the reader catches up and waits
        await stream.close_write()

    server.mux.handle("Source", source)
    resp = await peer.call_raw("Source")
    assert await resp.receive() is None
    want = hashlib.sha256()
    for _ in range(size // len(block)):
        want.update(block)
    got = hashlib.sha256()
    total = 0
    timeouts = 0
    while True:
        try:
            chunk = await asyncio.wait_for(resp.read(100_000), 0.00001)
        except asyncio.TimeoutError:
            timeouts += 1
            continue
        if not chunk:
            break
        got.update(chunk)
        total += len(chunk)
    assert total == size
    assert got.hexdigest() == want.hexdigest()
    assert timeouts > 0
    resp.close()


async def test_byte_reader_survives_wait_for_timeouts(server, peer):
    lines = [f"line {i}\n".encode() for i in range(5000)]

    async def source(call):
        stream = await call.continue_with(None)
        _, writer = stream.streams()
        for i, line in enumerate(lines):
            writer.write(line)
            if i % 100 == 0:
                await writer.drain()
                await asyncio.sleep(0.002)
        await writer.write_eof()

    server.mux.handle("Lines", source)
    resp = await peer.call_raw("Lines")
    assert await resp.receive() is None
    reader, _ = resp.streams()
    got = []
    timeouts = 0
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), 0.00001)
        except asyncio.TimeoutError:
            timeouts += 1
            continue
        if not line:
            break
        got.append(line)
    assert got == lines
    assert timeouts > 0
