"""The interop service and the check sequence of qtalk's interoperability test, in Python.

``service()`` answers ``Unary``, ``Stream`` and ``Bytes`` (each calls the same selector back on
its caller before answering, so both directions are exercised) and ``Error``, as the
reference's ``qtalk interop`` does. ``run_check(peer)`` runs the reference's ``qtalk check``
sequence against such a service, printing one line per passed check exactly as the
reference prints it (``Unary: 100 100``, ``Stream: map[foo:bar]``, ``Bytes: 1024``), and
``callbacks()`` answers the service's calls back.
"""

from __future__ import annotations

import asyncio
import decimal
import math
import os
import sys
import time
from typing import Any, Callable, List, Optional, Sequence, TextIO

from ._errors import RemoteError
from ._native import Call, HandlerFunc, Responder, RespondMux

#: Bytes one read of the byte-stream checks asks for.
CHUNK = 256 * 1024


class CheckFailed(Exception):
    """A check found a difference (or got no answer in time)."""


# --- Go's %v -----------------------------------------------------------------------------


def go_format(v: Any) -> str:
    """``v`` as Go's ``fmt.Sprint`` renders the equivalent ``any``: ``map[foo:bar]``,
    ``[1 2 3]``, ``<nil>``, ``1e+06``."""
    if v is None:
        return "<nil>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in v) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(go_format(e) for e in v) + "]"
    if isinstance(v, dict):
        keys = list(v.keys())
        if all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in keys):
            keys.sort()
        else:
            keys.sort(key=go_format)
        return "map[" + " ".join(f"{go_format(k)}:{go_format(v[k])}" for k in keys) + "]"
    return str(v)


def _go_float(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign = "-" if f < 0 else ""
    # repr() gives the shortest digits that round-trip, as Go's precision -1 does.
    t = decimal.Decimal(repr(abs(f))).normalize().as_tuple()
    digits = "".join(map(str, t.digits))
    point = len(digits) + int(t.exponent)  # the decimal point comes after `point` digits
    exp = point - 1
    if exp < -4 or exp >= 6:  # Go's %v: exponent form outside 1e-4 <= |f| < 1e6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if len(digits) <= point:
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def same_value(a: Any, b: Any) -> bool:
    """Equality as a Go peer sees it: an integer may come back as a float holding the same
    number, and map order does not matter (but ``True`` is not ``1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (a != a and b != b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return len(a) == len(b) and all(
            any(same_value(k, k2) and same_value(v, v2) for k2, v2 in b.items())
            for k, v in a.items()
        )
    if isinstance(a, (bytes, bytearray)) and isinstance(b, (bytes, bytearray)):
        return bytes(a) == bytes(b)
    return type(a) is type(b) and a == b


# --- the service -------------------------------------------------------------------------


async def _pump(read: Callable[[int], Any], write: Callable[[bytes], Any]) -> int:
    total = 0
    while True:
        chunk = await read(CHUNK)
        if not chunk:
            return total
        await write(chunk)
        total += len(chunk)


async def _unary(responder: Responder, call: Call) -> None:
    params = await call.receive()
    try:
        ret = await call.caller.call_value("Unary", params)
    except Exception as e:  # noqa: BLE001 - reported to the caller
        await responder.error(f"Unary callback: {e}")
        return
    await responder.ret(ret)


async def _stream(responder: Responder, call: Call) -> None:
    params = await call.receive()
    try:
        upstream = await call.caller.call_raw_value("Stream", params)
        reply = await upstream.receive()
    except Exception as e:  # noqa: BLE001
        await responder.error(f"Stream callback: {e}")
        return
    down = await responder.continue_with(reply)

    async def forward() -> None:
        # The caller's values go to the callback's stream.
        async for v in down:
            await upstream.send(v)
        await upstream.close_write()

    forwarding = asyncio.create_task(forward())
    try:
        # The callback's values come back down; its end ends ours.
        async for v in upstream:
            await down.send(v)
        await down.close_write()
    finally:
        if not forwarding.done():
            forwarding.cancel()
        await asyncio.gather(forwarding, return_exceptions=True)
        upstream.close()
        down.close()


async def _bytes(responder: Responder, call: Call) -> None:
    params = await call.receive()
    try:
        upstream = await call.caller.call_raw_value("Bytes", params)
        reply = await upstream.receive()
    except Exception as e:  # noqa: BLE001
        await responder.error(f"Bytes callback: {e}")
        return
    down = await responder.continue_with(reply)

    async def forward() -> None:
        await _pump(down.read, upstream.write)
        await upstream.close_write()

    async def back() -> None:
        await _pump(upstream.read, down.write)
        await down.close_write()

    try:
        await asyncio.gather(forward(), back())
    finally:
        upstream.close()
        down.close()


async def _error(responder: Responder, call: Call) -> None:
    text = await call.receive()
    await responder.error(text if isinstance(text, str) else go_format(text))


def service() -> RespondMux:
    """The interop service: ``Unary``, ``Stream``, ``Bytes`` (each calling the same selector
    back on its caller) and ``Error``."""
    mux = RespondMux()
    mux.handle("Unary", HandlerFunc(_unary))
    mux.handle("Stream", HandlerFunc(_stream))
    mux.handle("Bytes", HandlerFunc(_bytes))
    mux.handle("Error", HandlerFunc(_error))
    return mux


# --- what a checker answers --------------------------------------------------------------


async def _echo(responder: Responder, call: Call) -> None:
    await responder.ret(await call.receive())


async def _echo_stream(responder: Responder, call: Call) -> None:
    stream = await responder.continue_with(await call.receive())
    async for v in stream:
        await stream.send(v)
    await stream.close_write()


async def _echo_bytes(responder: Responder, call: Call) -> None:
    stream = await responder.continue_with(await call.receive())
    await _pump(stream.read, stream.write)
    await stream.close_write()


def callbacks() -> RespondMux:
    """The echo handlers a checker serves for the service's calls back."""
    mux = RespondMux()
    mux.handle("Unary", HandlerFunc(_echo))
    mux.handle("Stream", HandlerFunc(_echo_stream))
    mux.handle("Bytes", HandlerFunc(_echo_bytes))
    return mux


# --- the check sequence ------------------------------------------------------------------


def values() -> List[Any]:
    """What the Unary and Stream checks send."""
    return [100, True, "hello", {"foo": "bar"}, [1, 2, 3]]


async def _within(timeout: float, what: str, aw: Any) -> Any:
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what}: no answer within {timeout:g} s") from None


async def _stream_check(peer: Any, sent: Sequence[Any]) -> List[Any]:
    resp = await peer.call_raw_value("Stream", None)
    try:
        await resp.receive()
        for v in sent:
            await resp.send(v)
        await resp.close_write()
        return [v async for v in resp]
    finally:
        resp.close()


async def _bytes_check(peer: Any, data: bytes) -> bytes:
    resp = await peer.call_raw_value("Bytes", None)
    try:
        await resp.receive()

        async def write() -> None:
            for i in range(0, len(data), CHUNK):
                await resp.write(data[i:i + CHUNK])
            await resp.close_write()

        async def read() -> bytes:
            got = bytearray()
            while True:
                chunk = await resp.read(CHUNK)
                if not chunk:
                    return bytes(got)
                got += chunk

        _, echoed = await asyncio.gather(write(), read())
        return echoed
    finally:
        resp.close()


async def run_check(
    peer: Any,
    out: TextIO = sys.stdout,
    timeout: float = 10.0,
    byte_sizes: Sequence[int] = (1, 1024, 1 << 20),
) -> int:
    """Runs the check sequence with ``peer`` (whose mux must answer :func:`callbacks`);
    prints one line per passed check; returns how many passed. Raises :class:`CheckFailed`
    at the first difference."""
    passed = 0

    def line(text: str) -> None:
        nonlocal passed
        print(text, file=out, flush=True)
        passed += 1

    for selector, expected in [("Error", "test"), ("BadSelector", "not found: /BadSelector")]:
        what = f'{selector}("test")'
        try:
            got = await _within(timeout, what, peer.call_value(selector, "test"))
        except RemoteError as e:
            if e.text != expected:
                raise CheckFailed(
                    f"{what}: expected the error {expected!r}, got the error {e.text!r}"
                ) from None
            line(f"Error: {e.text}")
            continue
        raise CheckFailed(f"{what}: expected the error {expected!r}, got the value "
                          f"{go_format(got)}")

    for v in values():
        what = f"Unary({go_format(v)})"
        ret = await _within(timeout, what, peer.call_value("Unary", v))
        if not same_value(v, ret):
            raise CheckFailed(f"{what}: returned {go_format(ret)} instead of the value sent")
        line(f"Unary: {go_format(v)} {go_format(ret)}")

    sent = values()
    received = await _within(timeout, "Stream", _stream_check(peer, sent))
    for i, got in enumerate(received):
        if i >= len(sent):
            raise CheckFailed(f"Stream: sent {len(sent)} values but got more back: "
                              f"{go_format(got)}")
        if not same_value(sent[i], got):
            raise CheckFailed(f"Stream: value {i + 1} came back as {go_format(got)} instead "
                              f"of {go_format(sent[i])}")
        line(f"Stream: {go_format(got)}")
    if len(received) < len(sent):
        raise CheckFailed(f"Stream: sent {len(sent)} values but the stream ended after "
                          f"{len(received)}")

    for size in byte_sizes:
        data = os.urandom(size)
        what = f"Bytes({size} bytes)"
        echoed = await _within(timeout, what, _bytes_check(peer, data))
        if len(echoed) != len(data):
            raise CheckFailed(f"{what}: sent {len(data)} bytes, got {len(echoed)} back")
        if echoed != data:
            i = next(i for i, (a, b) in enumerate(zip(echoed, data)) if a != b)
            raise CheckFailed(f"{what}: byte {i} came back as {echoed[i]:#04x} instead of "
                              f"{data[i]:#04x}")
        line(f"Bytes: {len(echoed)}")
    return passed


def elapsed_since(start: float) -> str:
    """Wall time since ``start`` (a ``time.monotonic()``), for the summary line."""
    d = time.monotonic() - start
    return f"{d * 1000:.0f}ms" if d < 1 else f"{d:.2f}s"


def codec_from_env(explicit: Optional[str] = None) -> str:
    """The codec to use: ``explicit``, else as the reference: CBOR unless
    ``QTALK_CODEC=json``."""
    if explicit:
        return explicit
    return "json" if os.environ.get("QTALK_CODEC", "").strip().lower() == "json" else "cbor"
