"""Runs Python handlers for the native module (on the event loop a server or peer captured)."""

from __future__ import annotations

import asyncio
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


def is_service(obj: Any) -> bool:
    """Whether ``obj`` is an instance of a ``qtalk_rs.Service`` class."""
    from ._service import Service

    return isinstance(obj, Service)


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


async def _in_executor(fn: Callable[..., Any], call: Any, args: tuple) -> Any:
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(None, functools.partial(fn, call, *args))
    if inspect.isawaitable(result):
        result = await result
    return result


async def _awaiting(fn: Callable[..., Any], call: Any, args: tuple) -> Any:
    return await fn(call, *args)


def start(
    fn: Callable[..., Any],
    coroutine: bool,
    call: Any,
    args: tuple,
    done: Callable[["asyncio.Task[Any]"], None],
) -> "asyncio.Task[Any]":
    """Runs the handler as a task of the running loop (called on the loop's thread);
    ``done`` gets the task."""
    loop = asyncio.get_running_loop()
    if coroutine:
        coro = fn(call, *args)
        if not inspect.iscoroutine(coro):
            coro = _awaiting(lambda *_: coro, call, args)
    else:
        coro = _in_executor(fn, call, args)
    task = loop.create_task(coro)
    task.add_done_callback(done)
    return task


def outcome(task: "asyncio.Task[Any]", selector: str) -> Tuple[bool, Any]:
    """(True, reply) or (False, the error text for the caller). An exception other than
    ``RemoteError`` (an answer on purpose) is logged at ERROR with its traceback."""
    if task.cancelled():
        log.debug("handler for %s cancelled (the caller abandoned the call)", selector)
        return False, "handler cancelled"
    exc = task.exception()
    if exc is None:
        return True, task.result()
    from ._errors import RemoteError

    if isinstance(exc, RemoteError):
        return False, exc.text
    log.error("handler for %s raised %s", selector, type(exc).__name__, exc_info=exc)
    text = str(exc)
    return False, text if text else type(exc).__name__


async def _guard(hooks: Any, info: Any) -> None:
    for hook in hooks:
        result = hook(info)
        if inspect.isawaitable(result):
            await result


def guard(hooks: Any, info: Any, verdict: Callable[["asyncio.Task[Any]"], None]) -> None:
    """Runs the server middleware on ``info`` as a task of the running loop; ``verdict`` gets
    the task."""
    task = asyncio.get_running_loop().create_task(_guard(hooks, info))
    task.add_done_callback(verdict)


def verdict(task: "asyncio.Task[Any]") -> Optional[str]:
    """None when the middleware let the call through, else the error text for the caller.
    ``RemoteError`` refuses on purpose; any other exception is logged at ERROR too."""
    if task.cancelled():
        return "middleware cancelled"
    exc = task.exception()
    if exc is None:
        return None
    from ._errors import RemoteError

    if isinstance(exc, RemoteError):
        return exc.text
    log.error("middleware raised %s", type(exc).__name__, exc_info=exc)
    text = str(exc)
    return text if text else type(exc).__name__
