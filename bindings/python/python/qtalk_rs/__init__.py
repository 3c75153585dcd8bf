"""qtalk for Python on the Rust core: asyncio RPC over qmux, interoperable with qtalk-go.

    import asyncio, qtalk_rs

    async def main():
        async with await qtalk_rs.connect("tcp://127.0.0.1:9999") as peer:
            print(await peer.call("Upper", "hello world"))

    asyncio.run(main())
"""

from __future__ import annotations

import atexit
from typing import Any, Callable, TypeVar

from ._errors import QtalkError, RemoteError
from ._streams import ByteReader, ByteWriter
from ._native import (
    Call,
    Caller,
    HandlerFunc,
    Peer,
    RespondMux,
    Responder,
    Response,
    Server,
    Stream,
    connect,
    connect_command,
    connect_stdio,
    decode,
    encode,
    self_signed,
    start_server,
)
from ._native import shutdown as _shutdown

# Before the interpreter finalizes, the runtime's threads stop entering Python.
atexit.register(_shutdown)

__all__ = [
    "ByteReader",
    "ByteWriter",
    "Call",
    "Caller",
    "HandlerFunc",
    "Peer",
    "QtalkError",
    "RemoteError",
    "RespondMux",
    "Responder",
    "Response",
    "Server",
    "Stream",
    "connect",
    "connect_command",
    "connect_stdio",
    "decode",
    "encode",
    "handler",
    "self_signed",
    "serve",
    "start_server",
]

F = TypeVar("F", bound=Callable[..., Any])


async def serve(url: str, mux: RespondMux, codec: str = "json", **tls: Any) -> None:
    """Serves ``mux`` at ``url`` until cancelled (as Go's ``talk.Serve`` blocks); ``tls`` are
    :func:`start_server`'s ``cert=`` and ``key=``.

    Use :func:`start_server` to get the bound address or to stop it yourself.
    """
    server = await start_server(url, mux, codec=codec, **tls)
    try:
        await server.serve_forever()
    finally:
        server.close()


def handler(mux: RespondMux, pattern: str) -> Callable[[F], F]:
    """Decorator registering a function in ``mux``: ``@qtalk_rs.handler(mux, "Upper")``."""

    def register(fn: F) -> F:
        mux.handle(pattern, fn)
        return fn

    return register
