"""Type stubs of the native module (the API is re-exported by ``qtalk_rs``)."""

from __future__ import annotations

from types import TracebackType
from typing import (
    Any,
    Awaitable,
    Callable,
    Coroutine,
    Dict,
    Generator,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
    final,
)

from ._streams import ByteReader, ByteWriter

__all__ = [
    "shutdown", "Op", "Dispatcher", "Callback", "Config", "Options", "Connection", "CallInfo",
    "RespondMux", "Peer",
    "Caller", "Response", "Call", "Stream", "Responder", "HandlerFunc", "Server", "connect",
    "connect_command", "connect_stdio", "start_server", "self_signed", "encode", "decode",
]

_T_co = TypeVar("_T_co", covariant=True)

# What crosses the wire. Sent: these (tuples go as arrays; bytearray and memoryview as bytes;
# functions as callbacks). Received: None, bool, int, float, str, bytes (CBOR only; JSON
# carries bytes as base64 text), list, dict and Callback.
_Value = Union[
    None, bool, int, float, str, bytes, bytearray, memoryview, List[Any], Tuple[Any, ...],
    Dict[Any, Any], Callable[..., Any], "Callback",
]
_BytesLike = Union[bytes, bytearray, memoryview]


@final
class Op(Coroutine[Any, Any, _T_co]):
    """A coroutine of the native module: nothing starts before it is awaited (or made a
    task); cancelling it stops the operation (writes finish; receives keep what arrives for
    the next receive)."""

    def __await__(self) -> Generator[Any, None, _T_co]: ...
    def __iter__(self) -> Generator[Any, None, _T_co]: ...
    def __next__(self) -> Any: ...
    def send(self, _value: Any = None) -> Any: ...
    def throw(self, typ: Any, val: Any = None, _tb: Any = None) -> Any: ...
    def close(self) -> None: ...
    # `connect(...)` and `start_server(...)` are async context managers too:
    # `async with connect(url) as peer` (the peer is closed on exit).
    def __aenter__(self) -> Op[_T_co]: ...
    def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Awaitable[Any]: ...

@final
class Dispatcher:
    """The job queue of one event loop (internal: see ``qtalk_rs._loop``)."""

    def __new__(cls) -> Dispatcher: ...
    def fileno(self) -> int: ...
    def use_call_soon_threadsafe(self, event_loop: Any) -> None: ...
    def drain(self) -> None: ...
    def close(self) -> None: ...

@final
class Config:
    """The session layer's limits and timeouts, checked when made (ValueError). Sizes in
    bytes, times in seconds; anything not given keeps the default."""

    def __new__(
        cls,
        *,
        window: Optional[int] = None,
        max_packet: Optional[int] = None,
        max_channels: Optional[int] = None,
        accept_backlog: Optional[int] = None,
        open_queue: Optional[int] = None,
        memory_budget: Optional[int] = None,
        send_buffer: Optional[int] = None,
        open_timeout: Optional[float] = None,
        accept_timeout: Optional[float] = None,
        close_timeout: Optional[float] = None,
        handshake_timeout: Optional[float] = None,
        max_handshakes: Optional[int] = None,
        keep_alive: Optional[float] = None,
        idle_timeout: Optional[float] = None,
    ) -> Config: ...
    @property
    def window(self) -> int: ...
    @property
    def max_packet(self) -> int: ...
    @property
    def max_channels(self) -> int: ...

@final
class Options:
    """The rpc layer's limits, checked when made (ValueError)."""

    def __new__(
        cls,
        *,
        max_frame: Optional[int] = None,
        header_timeout: Optional[float] = None,
        args_grace: Optional[float] = None,
        spare_channels: Optional[int] = None,
        spare_max_age: Optional[float] = None,
        max_metadata: Optional[int] = None,
        max_sessions: Optional[int] = None,
        max_calls: Optional[int] = None,
    ) -> Options: ...
    @property
    def max_frame(self) -> int: ...
    @property
    def header_timeout(self) -> float: ...
    @property
    def max_metadata(self) -> int: ...
    @property
    def max_sessions(self) -> int: ...
    @property
    def max_calls(self) -> int: ...

@final
class Connection:
    """The connection a call or a session came over."""

    @property
    def transport(self) -> str:
        """``"tcp"``, ``"unix"``, ``"tls"``, ``"websocket"``, ``"quic"``, ``"stdio"``, ..."""
    @property
    def remote_addr(self) -> Optional[str]: ...
    @property
    def local_addr(self) -> Optional[str]: ...
    @property
    def secure(self) -> bool: ...
    @property
    def peer_certificates(self) -> List[bytes]:
        """The TLS (or QUIC) peer's certificates, leaf first, DER."""
    @property
    def peer_certificate(self) -> Optional[bytes]: ...
    @property
    def server_name(self) -> Optional[str]: ...
    @property
    def path(self) -> Optional[str]:
        """The WebSocket upgrade request's path and query."""
    @property
    def headers(self) -> Optional[Dict[str, str]]:
        """The WebSocket upgrade request's headers."""
    def cookie(self, name: str) -> Optional[str]: ...
    @property
    def peer_credentials(self) -> Optional[Tuple[Optional[int], Optional[int], Optional[int]]]:
        """A Unix socket peer's (pid, uid, gid)."""

@final
class CallInfo:
    """What server middleware sees of a call before its handler runs."""

    @property
    def selector(self) -> str: ...
    @property
    def metadata(self) -> Dict[str, str]: ...
    @property
    def remaining(self) -> Optional[float]:
        """Seconds left until the caller's deadline, or None."""
    @property
    def connection(self) -> Connection: ...

@final
class RespondMux:
    """Routes selectors to handlers (``def handler(call, *params)``, sync or async)."""

    def __new__(cls) -> RespondMux: ...
    def handle(self, pattern: str, handler: Any) -> Any:
        """Registers ``handler`` (a function, a ``HandlerFunc``, a ``Service`` or another
        mux) for ``pattern``; returns it. TypeError for something that cannot answer calls,
        ValueError for a pattern registered twice."""

@final
class HandlerFunc:
    """``mux.handle("X", HandlerFunc(h))``: ``h(responder, call)`` as a low-level handler (Go's
    ``rpc.HandlerFunc``): ``await call.receive()`` gives the argument value as sent (no
    positional-parameter check) and ``responder`` answers."""

    def __new__(cls, func: Callable[[Responder, Call], Any]) -> HandlerFunc: ...
    @property
    def func(self) -> Callable[..., Any]: ...
    def __call__(self, responder: Responder, call: Call) -> Any: ...

@final
class Callback:
    """A function of the peer, received as a value (``{"$fnptr": id}``): ``await cb(*args)``
    calls it back over the session it came on. ``peer.callback(fn)`` makes one of a local
    function, to send many times and ``unregister()``."""

    @property
    def id(self) -> str: ...
    def __call__(self, *args: _Value, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Any]: ...
    def unregister(self) -> bool: ...

@final
class Responder:
    """How a low-level handler answers, once; one that ends without answering answers with
    what it returned (or the error it raised)."""

    def ret(self, *values: _Value) -> Op[None]:
        """Answers with the values (none: null; several: a multi-value reply)."""
    def error(self, message: str) -> Op[None]:
        """Answers with an error (the caller's ``RemoteError``)."""
    def continue_with(self, value: _Value = None) -> Op[Stream]:
        """Answers with ``value`` and keeps the channel open as a ``Stream``."""
    @property
    def responded(self) -> bool: ...

@final
class Call:
    """The call a handler answers; passed to it first."""

    @property
    def selector(self) -> str:
        """The selector called, cleaned (``"/Upper"``)."""
    @property
    def caller(self) -> Caller:
        """Calls back the peer that made this call."""
    @property
    def metadata(self) -> Dict[str, str]:
        """The call's metadata, as the caller sent it."""
    @property
    def remaining(self) -> Optional[float]:
        """Seconds left until the caller's deadline (0.0 once passed), or None."""
    @property
    def connection(self) -> Connection:
        """The connection the call came over."""
    def receive(self) -> Op[Any]:
        """The next value streamed after the arguments; EOFError at its end."""
    def continue_with(self, value: _Value = None) -> Op[Stream]:
        """Answers with ``value`` and keeps the channel open as a ``Stream``."""

@final
class Stream:
    """A handler's side of a continued call."""

    def send(self, value: _Value) -> Op[None]: ...
    def receive(self) -> Op[Any]:
        """The caller's next value; EOFError at its end."""
    def __aiter__(self) -> Stream: ...
    def __anext__(self) -> Op[Any]: ...
    def read(self, n: int = 65536) -> Op[bytes]:
        """Up to ``n`` raw bytes from the caller (at most 1 MiB); ``b""`` at end-of-stream."""
    def write(self, data: _BytesLike) -> Op[None]:
        """Writes raw bytes to the caller."""
    def streams(self) -> Tuple[ByteReader, ByteWriter]:
        """The raw byte stream as an asyncio-style (reader, writer) pair."""
    def close_write(self) -> Op[None]:
        """Ends what the handler sends; the caller's iteration ends."""
    def close(self) -> None: ...

@final
class Response:
    """The response of ``call_raw``: the reply values, and a stream when ``continued``.

    Its receiving side (``receive``, ``read``) and sending side (``send``, ``write``) may be
    used at once from different tasks."""

    @property
    def continued(self) -> bool: ...
    def receive(self) -> Op[Any]:
        """The next value; EOFError once the responder ended the stream."""
    def __aiter__(self) -> Response: ...
    def __anext__(self) -> Op[Any]: ...
    def send(self, value: _Value) -> Op[None]: ...
    def read(self, n: int = 65536) -> Op[bytes]:
        """Up to ``n`` raw bytes from the responder (at most 1 MiB); ``b""`` at end-of-stream."""
    def write(self, data: _BytesLike) -> Op[None]:
        """Writes raw bytes to the responder."""
    def streams(self) -> Tuple[ByteReader, ByteWriter]:
        """The raw byte stream as an asyncio-style (reader, writer) pair."""
    def close_write(self) -> Op[None]: ...
    def close(self) -> None: ...
    def __aenter__(self) -> Op[Response]: ...
    def __aexit__(
        self,
        _exc_type: Optional[Type[BaseException]],
        _exc: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> Op[bool]: ...

@final
class Caller:
    """Makes calls on a session (a handler's ``call.caller``)."""

    @property
    def codec(self) -> str: ...
    def call(self, selector: str, *args: _Value, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Any]:
        """Calls ``selector`` with the positional arguments (sent as an array, like Go's
        ``fn.Args``); returns the reply. RemoteError for the responder's error."""
    def call_value(self, selector: str, value: _Value, *, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Any]:
        """Calls ``selector`` with ``value`` itself as the argument."""
    def call_raw(self, selector: str, *args: _Value, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Response]:
        """Calls ``selector``; the Response once its header arrived."""
    def call_raw_value(
        self, selector: str, value: _Value, *, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None
    ) -> Op[Response]:
        """Calls ``selector`` with ``value`` itself as the argument; the Response."""
    def callback(self, func: Callable[..., Any]) -> Callback:
        """Registers ``func`` as a callback of this session (to send as a value)."""

@final
class Peer:
    """A connected session that calls and answers calls (callbacks) with its mux."""

    @property
    def codec(self) -> str: ...
    def call(self, selector: str, *args: _Value, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Any]:
        """Calls ``selector`` with the positional arguments (sent as an array, like Go's
        ``fn.Args``); returns the reply. RemoteError for the responder's error."""
    def call_value(self, selector: str, value: _Value, *, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Any]:
        """Calls ``selector`` with ``value`` itself as the argument."""
    def call_raw(self, selector: str, *args: _Value, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None) -> Op[Response]:
        """Calls ``selector``; the Response once its header arrived."""
    def call_raw_value(
        self, selector: str, value: _Value, *, timeout: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None
    ) -> Op[Response]:
        """Calls ``selector`` with ``value`` itself as the argument; the Response."""
    def callback(self, func: Callable[..., Any]) -> Callback:
        """Registers ``func`` as a callback of this session (to send as a value)."""
    @property
    def mux(self) -> RespondMux: ...
    @property
    def caller(self) -> Caller: ...
    @property
    def connection(self) -> Connection: ...
    @property
    def closed(self) -> bool: ...
    def handle(self, pattern: str, handler: Any) -> Any: ...
    def close(self) -> None: ...
    def wait_closed(self) -> Op[str]:
        """Waits for the session's end; returns why it ended."""
    def __aenter__(self) -> Op[Peer]: ...
    def __aexit__(
        self,
        _exc_type: Optional[Type[BaseException]],
        _exc: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> Op[bool]: ...

@final
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
    def shutdown(self, grace: float = 1.0) -> Op[None]: ...
    def wait_closed(self) -> Op[None]: ...
    def serve_forever(self) -> Op[None]: ...
    def __aenter__(self) -> Op[Server]: ...
    def __aexit__(
        self,
        _exc_type: Optional[Type[BaseException]],
        _exc: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> Op[bool]: ...

def connect(
    url: str,
    *,
    codec: str = "json",
    mux: Optional[RespondMux] = None,
    ca: Optional[str] = None,
    insecure: bool = False,
    cert: Optional[str] = None,
    key: Optional[str] = None,
    timeout: Optional[float] = None,
    metadata: Optional[Dict[str, str]] = None,
    middleware: Optional[Sequence[Callable[[str, Dict[str, str]], None]]] = None,
    config: Optional[Config] = None,
    options: Optional[Options] = None,
) -> Op[Peer]:
    """Connects to ``tcp://HOST:PORT`` (or ``HOST:PORT``), ``ws://HOST[:PORT]``,
    ``unix:///path``, ``tls://HOST:PORT``, ``wss://HOST[:PORT]`` or ``quic://HOST:PORT``;
    ``mux`` answers the other side's calls. ``await`` it, or ``async with`` it."""

def connect_command(
    argv: Sequence[str],
    *,
    codec: str = "json",
    mux: Optional[RespondMux] = None,
    config: Optional[Config] = None,
    options: Optional[Options] = None,
) -> Op[Peer]:
    """Runs a command and talks over its stdin and stdout."""

def connect_stdio(
    *,
    codec: str = "json",
    mux: Optional[RespondMux] = None,
    config: Optional[Config] = None,
    options: Optional[Options] = None,
) -> Op[Peer]:
    """Talks over this process's stdin and stdout."""

def start_server(
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
) -> Op[Server]:
    """Binds ``url`` (port 0 picks one) and serves ``mux`` in the background. ``tls://``,
    ``wss://`` and ``quic://`` need ``cert`` and ``key`` (PEM files)."""

def self_signed(names: Sequence[str] = ...) -> Tuple[str, str]:
    """A fresh self-signed (certificate, key) pair as PEM text, naming ``names`` (default
    localhost, 127.0.0.1 and ::1): for development servers and the clients' ``ca``."""

def encode(value: _Value, codec: str = "json") -> bytes:
    """The bytes qtalk sends for ``value`` (one frame's body)."""

def decode(data: bytes, codec: str = "json") -> Any:
    """The value encoded in ``data``."""

def shutdown() -> None: ...
