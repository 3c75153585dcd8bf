"""A call continued into raw bytes, as a reader/writer pair shaped like asyncio's streams.

``reader, writer = response.streams()`` (the caller's side) or ``stream.streams()`` (the
handler's side, after ``call.continue_with``). The reader has ``read``, ``readexactly``,
``readline``, ``readuntil``, ``at_eof`` and async iteration by line, as
``asyncio.StreamReader``; the writer has ``write``, ``writelines``, ``drain``,
``write_eof``, ``close`` and ``wait_closed``, as ``asyncio.StreamWriter``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Optional, Tuple

#: Bytes one read asks the channel for.
READ_CHUNK = 256 * 1024
#: Default ``limit`` of ``readline``/``readuntil`` (as asyncio's).
DEFAULT_LIMIT = 64 * 1024


class ByteReader:
    """The receiving side of a continued call's byte stream."""

    def __init__(self, source: Any, limit: int = DEFAULT_LIMIT) -> None:
        self._source = source
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self, n: int = READ_CHUNK) -> bool:
        """Reads more into the buffer; False at end-of-stream."""
        if self._eof:
            return False
        chunk = await self._source.read(n)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def at_eof(self) -> bool:
        """True when the buffer is empty and the other side ended its stream."""
        return self._eof and not self._buffer

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all until end-of-stream for ``n < 0``); ``b""`` at its end."""
        if n == 0:
            return b""
        if n < 0:
            while await self._fill():
                pass
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if not self._buffer:
            if self._eof:
                return b""
            # Straight from the channel, without going through the buffer.
            chunk = await self._source.read(n)
            if not chunk:
                self._eof = True
            return bytes(chunk)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; ``asyncio.IncompleteReadError`` if the stream ends first."""
        if n < 0:
            raise ValueError("readexactly size can not be less than zero")
        while len(self._buffer) < n:
            if not await self._fill(max(n - len(self._buffer), 1)):
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator``. ``asyncio.IncompleteReadError`` if the
        stream ends first; ``asyncio.LimitOverrunError`` past the reader's limit."""
        if not separator:
            raise ValueError("separator should be at least one-byte string")
        start = 0
        while True:
            i = self._buffer.find(separator, start)
            if i >= 0:
                end = i + len(separator)
                if end > self._limit:
                    raise asyncio.LimitOverrunError(
                        "separator is found, but chunk is longer than limit", i
                    )
                data = bytes(self._buffer[:end])
                del self._buffer[:end]
                return data
            if len(self._buffer) > self._limit:
                raise asyncio.LimitOverrunError(
                    "separator is not found, and chunk exceed the limit", len(self._buffer)
                )
            start = max(0, len(self._buffer) - len(separator) + 1)
            if not await self._fill():
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)

    async def readline(self) -> bytes:
        """One line, ``\\n`` included; at end-of-stream what is left (maybe ``b""``)."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return e.partial
        except asyncio.LimitOverrunError as e:
            if self._buffer.startswith(b"\n", e.consumed):
                del self._buffer[: e.consumed + 1]
            else:
                self._buffer.clear()
            raise ValueError(e.args[0]) from None

    def __aiter__(self) -> "ByteReader":
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class ByteWriter:
    """The sending side of a continued call's byte stream.

    ``write`` only buffers; the bytes go out in the background, and ``drain`` waits until
    they went (use it, as with asyncio, to bound what is buffered). ``write_eof`` ends what
    this side sends; ``close`` closes the whole channel once what was written went out.
    """

    def __init__(self, sink: Any) -> None:
        self._sink = sink
        self._pending = bytearray()
        self._task: Optional["asyncio.Task[None]"] = None
        self._error: Optional[BaseException] = None
        self._closing = False
        self._closed = asyncio.get_running_loop().create_future()

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                chunk = bytes(self._pending)
                self._pending.clear()
                await self._sink.write(chunk)
        except BaseException as e:  # noqa: BLE001 - reported by drain()
            self._error = e
            self._pending.clear()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    def _check(self) -> None:
        if self._error is not None:
            raise ConnectionError(f"the stream failed: {self._error}") from self._error
        if self._closing:
            raise RuntimeError("the writer is closed")

    def write(self, data: Any) -> None:
        """Queues ``data`` (bytes-like) to be sent."""
        self._check()
        if not data:
            return
        self._pending += data
        self._kick()

    def writelines(self, data: Iterable[Any]) -> None:
        """Queues each of ``data``."""
        for d in data:
            self.write(d)

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._closing

    async def drain(self) -> None:
        """Waits until everything written went out to the channel."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._error is not None:
            raise ConnectionError(f"the stream failed: {self._error}") from self._error

    async def write_eof(self) -> None:
        """Sends what is buffered, then end-of-stream: the other side reads ``b""``; this side
        can still read. (A coroutine, unlike asyncio's: it waits for the buffered bytes.)"""
        await self.drain()
        await self._sink.close_write()

    def close(self) -> None:
        """Sends what is buffered, then closes the channel (in the background: await
        ``wait_closed``)."""
        if self._closing:
            return
        self._closing = True

        async def finish() -> None:
            try:
                await self.drain()
            except ConnectionError:
                pass
            finally:
                self._sink.close()
                if not self._closed.done():
                    self._closed.set_result(None)

        asyncio.get_running_loop().create_task(finish())

    async def wait_closed(self) -> None:
        """Waits until ``close`` finished."""
        await asyncio.shield(self._closed)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def pair(channel: Any) -> Tuple[ByteReader, ByteWriter]:
    """The (reader, writer) of ``channel`` (a continued Response or Stream)."""
    return ByteReader(channel), ByteWriter(channel)
