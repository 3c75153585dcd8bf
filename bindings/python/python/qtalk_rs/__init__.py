"""qtalk for Python on the Rust core: asyncio RPC over qmux, interoperable with qtalk-go.

    import asyncio, qtalk_rs

    async def main():
        async with qtalk_rs.connect("tcp://127.0.0.1:9999") as peer:
            print(await peer.call("Upper", "hello world"))

    asyncio.run(main())

Every method that waits returns a coroutine: ``await`` it, or hand it to
``asyncio.create_task`` or a ``TaskGroup``. Nothing starts before that.
"""

from __future__ import annotations

import atexit
from typing import Any, Callable, Optional, Sequence, TypeVar

from ._errors import (
    FrameTooLargeError,
    QtalkError,
    RefusedError,
    RemoteError,
    SessionClosedError,
    TimeoutError,
)
from ._native import (
    Call,
    CallInfo,
    Caller,
    Callback,
    Config,
    Connection,
    HandlerFunc,
    Options,
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
from ._service import Service, ServiceClient, selector
from ._streams import ByteReader, ByteWriter

# Before the interpreter finalizes, the module's own threads stop entering Python.
atexit.register(_shutdown)

__all__ = [
    "ByteReader",
    "ByteWriter",
    "Call",
    "CallInfo",
    "Callback",
    "Caller",
    "Config",
    "Connection",
    "FrameTooLargeError",
    "HandlerFunc",
    "Options",
    "Peer",
    "QtalkError",
    "RefusedError",
    "RemoteError",
    "RespondMux",
    "Responder",
    "Response",
    "Server",
    "Service",
    "ServiceClient",
    "SessionClosedError",
    "Stream",
    "TimeoutError",
    "connect",
    "connect_command",
    "connect_stdio",
    "decode",
    "encode",
    "handler",
    "selector",
    "self_signed",
    "serve",
    "start_server",
]

F = TypeVar("F", bound=Callable[..., Any])


async def serve(
    url: str,
    mux: RespondMux,
    *,
    codec: str = "json",
    cert: Optional[str] = None,
    key: Optional[str] = None,
    client_ca: Optional[str] = None,
    middleware: Optional[Sequence[Callable[[CallInfo], Any]]] = None,
    config: Optional[Config] = None,
    options: Optional[Options] = None,
    max_sessions: Optional[int] = None,
    max_calls: Optional[int] = None,
) -> None:
    """Serves ``mux`` at ``url`` until cancelled (as Go's ``talk.Serve`` blocks); the keyword
    arguments are :func:`start_server`'s.

    Use :func:`start_server` to get the bound address or to stop it yourself.
    """
    server = await start_server(
        url,
        mux,
        codec=codec,
        cert=cert,
        key=key,
        client_ca=client_ca,
        middleware=middleware,
        config=config,
        options=options,
        max_sessions=max_sessions,
        max_calls=max_calls,
    )
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
