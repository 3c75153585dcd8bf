"""Calls continued into raw byte streams (read/write, and the asyncio-style pair)."""

import asyncio
import os

import pytest

import qtalk_rs


def echo_bytes_handler():
    async def echo(call):
        stream = await call.continue_with("ready")
        reader, writer = stream.streams()
        while True:
            chunk = await reader.read(100_000)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        await writer.write_eof()

    return echo


async def test_full_duplex_echo_through_the_stream_pair(server, peer):
    server.mux.handle("Echo", echo_bytes_handler())
    data = os.urandom(3 * 1024 * 1024 + 17)
    resp = await peer.call_raw("Echo")
    assert resp.continued
    assert await resp.receive() == "ready"
    reader, writer = resp.streams()
    assert isinstance(reader, qtalk_rs.ByteReader)
    assert isinstance(writer, qtalk_rs.ByteWriter)

    async def send():
        # More than the channel's window: the echo must be read while this still writes.
        for i in range(0, len(data), 200_000):
            writer.write(data[i:i + 200_000])
            await writer.drain()
        await writer.write_eof()

    sender = asyncio.create_task(send())
    back = await asyncio.wait_for(reader.read(), 30)
    await sender
    assert back == data
    assert reader.at_eof()
    writer.close()
    await writer.wait_closed()


async def test_low_level_read_and_write(server, peer):
    async def upper_bytes(call):
        stream = await call.continue_with(None)
        while True:
            chunk = await stream.read()
            if not chunk:
                break
            await stream.write(chunk.upper())
        await stream.close_write()

    server.mux.handle("UpperBytes", upper_bytes)
    resp = await peer.call_raw("UpperBytes")
    assert await resp.receive() is None
    await resp.write(b"hello ")
    await resp.write(bytearray(b"bytes "))
    await resp.write(memoryview(b"world"))
    await resp.close_write()
    got = b""
    while True:
        chunk = await resp.read(4)
        assert len(chunk) <= 4
        if not chunk:
            break
        got += chunk
    assert got == b"HELLO BYTES WORLD"
    with pytest.raises(TypeError, match="expected bytes"):
        await resp.write("text")
    resp.close()


async def test_reader_lines_and_exact_reads(server, peer):
    async def lines(call):
        stream = await call.continue_with()
        _, writer = stream.streams()
        writer.write(b"one\ntwo\nthree")
        await writer.write_eof()

    server.mux.handle("Lines", lines)
    resp = await peer.call_raw("Lines")
    await resp.receive()
    reader, _ = resp.streams()
    assert await reader.readexactly(2) == b"on"
    assert await reader.readline() == b"e\n"
    assert [line async for line in reader] == [b"two\n", b"three"]
    assert reader.at_eof()

    resp = await peer.call_raw("Lines")
    await resp.receive()
    reader, _ = resp.streams()
    assert await reader.readuntil(b"two") == b"one\ntwo"
    with pytest.raises(asyncio.IncompleteReadError) as info:
        await reader.readexactly(100)
    assert info.value.partial == b"\nthree"


async def test_a_line_over_the_limit_is_refused(server, peer):
    async def long_line(call):
        stream = await call.continue_with()
        await stream.write(b"x" * 100_000 + b"\n")
        await stream.close_write()

    server.mux.handle("Long", long_line)
    resp = await peer.call_raw("Long")
    await resp.receive()
    reader = qtalk_rs.ByteReader(resp, limit=1000)
    with pytest.raises(asyncio.LimitOverrunError):
        await reader.readuntil(b"\n")


async def test_writing_after_the_channel_closed_fails(server, peer):
    async def hang_up(call):
        stream = await call.continue_with()
        stream.close()

    server.mux.handle("HangUp", hang_up)
    resp = await peer.call_raw("HangUp")
    await resp.receive()
    assert await resp.read() == b""
    _, writer = resp.streams()
    with pytest.raises((ConnectionError, qtalk_rs.QtalkError, OSError)):
        for _ in range(100):
            writer.write(b"y" * 65536)
            await asyncio.wait_for(writer.drain(), 10)
