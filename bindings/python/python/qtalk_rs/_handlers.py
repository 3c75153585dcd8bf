"""Runs Python handlers for the native module (on the event loop a server or peer captured)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
from typing import Any, Callable, Optional, Tuple

log = logging.getLogger("qtalk_rs")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def is_coroutine(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine to await (an ``async def`` or its instance)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)
    )


def arity(fn: Callable[..., Any]) -> Tuple[int, Optional[int], bool]:
    """(required params, most params or None for *args, whether fn is a coroutine function),
    not counting the call, which every handler takes first."""
    coroutine = is_coroutine(fn)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 0, None, coroutine
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    varargs = any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params)
    for p in params:
        if p.kind == inspect.Parameter.KEYWORD_ONLY and p.default is p.empty:
            raise TypeError(
                f"handler {fn!r}: keyword-only parameter {p.name!r} has no default; "
                "calls carry positional parameters only"
            )
    if positional:
        positional = positional[1:]
    elif not varargs:
        raise TypeError(
            f"handler {fn!r} takes no parameters: a handler takes the call first, "
            "as in def handler(call, *params)"
        )
    required = sum(1 for p in positional if p.default is p.empty)
    return required, (None if varargs else len(positional)), coroutine


async def _invoke(fn: Callable[..., Any], is_coroutine: bool, call: Any, args: tuple) -> Any:
    if is_coroutine:
        return await fn(call, *args)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, functools.partial(fn, call, *args))
    if inspect.isawaitable(result):
        result = await result
    return result


def start(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[..., Any],
    is_coroutine: bool,
    call: Any,
    args: tuple,
    done: Callable[[concurrent.futures.Future], None],
) -> concurrent.futures.Future:
    """Runs the handler on ``loop`` (called from a runtime thread); ``done`` gets its future."""
    fut = asyncio.run_coroutine_threadsafe(_invoke(fn, is_coroutine, call, args), loop)
    fut.add_done_callback(done)
    return fut


def outcome(fut: concurrent.futures.Future) -> Tuple[bool, Any]:
    """(True, reply) or (False, the error text for the caller)."""
    if fut.cancelled():
        return False, "handler cancelled"
    exc = fut.exception()
    if exc is None:
        return True, fut.result()
    from ._errors import QtalkError

    if not isinstance(exc, QtalkError):
        log.debug("handler raised", exc_info=exc)
    text = str(exc)
    return False, text if text else type(exc).__name__
