"""Type stubs of the native module (the API is re-exported by ``qtalk_rs``)."""

from __future__ import annotations

from types import TracebackType
from typing import (
    Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union,
)

from ._streams import ByteReader, ByteWriter

# What crosses the wire. Sent: these (tuples go as arrays; bytearray and memoryview as bytes).
# Received: None, bool, int, float, str, bytes (CBOR only; JSON carries bytes as base64 text),
# list and dict.
Value = Union[None, bool, int, float, str, bytes, bytearray, memoryview, List[Any], tuple, Dict[Any, Any]]

Handler = Callable[..., Union[Any, Awaitable[Any]]]

class RespondMux:
    """Routes selectors to handlers (``def handler(call, *params)``, sync or async)."""

    def __init__(self) -> None: ...
    def handle(self, pattern: str, handler: Union[Handler, RespondMux]) -> Any:
        """Registers ``handler`` for ``pattern`` (or mounts another mux under it); returns it.

        Raises TypeError for something not callable or a function that cannot take the call,
        ValueError for a pattern registered twice."""

class HandlerFunc:
    """``mux.handle("X", HandlerFunc(h))``: ``h(responder, call)`` as a low-level handler (Go's
    ``rpc.HandlerFunc``): ``await call.receive()`` gives the argument value as sent (no
    positional-parameter check) and ``responder`` answers."""

    def __init__(self, func: Callable[[Responder, Call], Union[Any, Awaitable[Any]]]) -> None: ...
    @property
    def func(self) -> Callable[..., Any]: ...
    def __call__(self, responder: Responder, call: Call) -> Any: ...

class Responder:
    """How a low-level handler answers, once; one that ends without answering answers with
    what it returned (or the error it raised)."""

    def ret(self, *values: Value) -> Awaitable[None]:
        """Answers with the values (none: null; several: a multi-value reply)."""
    def error(self, message: str) -> Awaitable[None]:
        """Answers with an error (the caller's ``RemoteError``)."""
    def continue_with(self, value: Value = None) -> Awaitable[Stream]:
        """Answers with ``value`` and keeps the channel open as a ``Stream``."""
    @property
    def responded(self) -> bool: ...

class Call:
    """The call a handler answers; passed to it first."""

    @property
    def selector(self) -> str:
        """The selector called, cleaned (``"/Upper"``)."""
    @property
    def caller(self) -> Caller:
        """Calls back the peer that made this call."""
    def receive(self) -> Awaitable[Any]:
        """The next value streamed after the arguments; EOFError at its end."""
    def continue_with(self, value: Value = None) -> Awaitable[Stream]:
        """Answers with ``value`` and keeps the channel open as a ``Stream``."""

class Stream:
    """A handler's side of a continued call."""

    def send(self, value: Value) -> Awaitable[None]: ...
    def receive(self) -> Awaitable[Any]:
        """The caller's next value; EOFError at its end."""
    def __aiter__(self) -> AsyncIterator[Any]: ...
    def __anext__(self) -> Awaitable[Any]: ...
    def read(self, n: int = 65536) -> Awaitable[bytes]:
        """Up to ``n`` raw bytes from the caller (at most 1 MiB); ``b""`` at end-of-stream."""
    def write(self, data: Union[bytes, bytearray, memoryview]) -> Awaitable[None]:
        """Writes raw bytes to the caller."""
    def streams(self) -> Tuple[ByteReader, ByteWriter]:
        """The raw byte stream as an asyncio-style (reader, writer) pair."""
    def close_write(self) -> Awaitable[None]:
        """Ends what the handler sends; the caller's iteration ends."""
    def close(self) -> None: ...

class Response:
    """The response of ``call_raw``: the reply values, and a stream when ``continued``.

    Its receiving side (``receive``, ``read``) and sending side (``send``, ``write``) may be
    used at once from different tasks."""

    @property
    def continued(self) -> bool: ...
    def receive(self) -> Awaitable[Any]:
        """The next value; EOFError once the responder ended the stream."""
    def __aiter__(self) -> AsyncIterator[Any]: ...
    def __anext__(self) -> Awaitable[Any]: ...
    def send(self, value: Value) -> Awaitable[None]: ...
    def read(self, n: int = 65536) -> Awaitable[bytes]:
        """Up to ``n`` raw bytes from the responder (at most 1 MiB); ``b""`` at end-of-stream."""
    def write(self, data: Union[bytes, bytearray, memoryview]) -> Awaitable[None]:
        """Writes raw bytes to the responder."""
    def streams(self) -> Tuple[ByteReader, ByteWriter]:
        """The raw byte stream as an asyncio-style (reader, writer) pair."""
    def close_write(self) -> Awaitable[None]: ...
    def close(self) -> None: ...
    async def __aenter__(self) -> Response: ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Caller:
    """Makes calls on a session (a handler's ``call.caller``)."""

    @property
    def codec(self) -> str: ...
    def call(self, selector: str, *args: Value) -> Awaitable[Any]:
        """Calls ``selector`` with the positional arguments (sent as an array, like Go's
        ``fn.Args``); returns the reply. RemoteError for the responder's error."""
    def call_value(self, selector: str, value: Value) -> Awaitable[Any]:
        """Calls ``selector`` with ``value`` itself as the argument."""
    def call_raw(self, selector: str, *args: Value) -> Awaitable[Response]:
        """Calls ``selector``; the Response once its header arrived."""
    def call_raw_value(self, selector: str, value: Value) -> Awaitable[Response]:
        """Calls ``selector`` with ``value`` itself as the argument; the Response."""

class Peer:
    """A connected session that calls and answers calls (callbacks) with its mux."""

    @property
    def codec(self) -> str: ...
    def call(self, selector: str, *args: Value) -> Awaitable[Any]:
        """Calls ``selector`` with the positional arguments (sent as an array, like Go's
        ``fn.Args``); returns the reply. RemoteError for the responder's error."""
    def call_value(self, selector: str, value: Value) -> Awaitable[Any]:
        """Calls ``selector`` with ``value`` itself as the argument."""
    def call_raw(self, selector: str, *args: Value) -> Awaitable[Response]:
        """Calls ``selector``; the Response once its header arrived."""
    def call_raw_value(self, selector: str, value: Value) -> Awaitable[Response]:
        """Calls ``selector`` with ``value`` itself as the argument; the Response."""
    @property
    def mux(self) -> RespondMux: ...
    @property
    def caller(self) -> Caller: ...
    @property
    def closed(self) -> bool: ...
    def handle(self, pattern: str, handler: Union[Handler, RespondMux]) -> Any: ...
    def close(self) -> None: ...
    def wait_closed(self) -> Awaitable[str]:
        """Waits for the session's end; returns why it ended."""
    async def __aenter__(self) -> Peer: ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Server:
    """A server started by ``start_server``; serves until closed."""

    @property
    def address(self) -> str:
        """The URL to connect to (with the port picked for port 0)."""
    @property
    def mux(self) -> RespondMux: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def shutdown(self, grace: float = 1.0) -> Awaitable[None]: ...
    def wait_closed(self) -> Awaitable[None]: ...
    def serve_forever(self) -> Awaitable[None]: ...
    async def __aenter__(self) -> Server: ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def connect(
    url: str,
    codec: str = "json",
    mux: Optional[RespondMux] = None,
    *,
    ca: Optional[str] = None,
    insecure: bool = False,
) -> Awaitable[Peer]:
    """Connects to ``tcp://HOST:PORT`` (or ``HOST:PORT``), ``ws://HOST[:PORT]``,
    ``unix:///path``, ``tls://HOST:PORT``, ``wss://HOST[:PORT]`` or ``quic://HOST:PORT``;
    ``mux`` answers the other side's calls. Over TLS and QUIC the server's certificate must
    name HOST and be trusted: by the system, by the PEM file ``ca``, or not checked at all
    with ``insecure=True`` (development only)."""

def connect_command(
    argv: Sequence[str], codec: str = "json", mux: Optional[RespondMux] = None
) -> Awaitable[Peer]:
    """Runs a command and talks over its stdin and stdout."""

def connect_stdio(codec: str = "json", mux: Optional[RespondMux] = None) -> Awaitable[Peer]:
    """Talks over this process's stdin and stdout."""

def start_server(
    url: str,
    mux: RespondMux,
    codec: str = "json",
    *,
    cert: Optional[str] = None,
    key: Optional[str] = None,
) -> Awaitable[Server]:
    """Binds ``url`` (port 0 picks one) and serves ``mux`` in the background. ``tls://``,
    ``wss://`` and ``quic://`` need ``cert`` and ``key`` (PEM files)."""

def self_signed(names: Sequence[str] = ...) -> Tuple[str, str]:
    """A fresh self-signed (certificate, key) pair as PEM text, naming ``names`` (default
    localhost, 127.0.0.1 and ::1): for development servers and the clients' ``ca``."""

def encode(value: Value, codec: str = "json") -> bytes:
    """The bytes qtalk sends for ``value`` (one frame's body)."""

def decode(data: bytes, codec: str = "json") -> Any:
    """The value encoded in ``data``."""

def shutdown() -> None: ...
