"""The job queue each event loop gets from the native module (see ``src/bridge.rs``).

Results of Rust futures and calls to Python handlers reach a loop as jobs: the runtime's
threads queue them and write one byte to a socket the loop watches with ``add_reader``; the
loop runs them. Loops that cannot watch a file descriptor are woken with
``call_soon_threadsafe`` instead. When the loop closes, its queue refuses further jobs (a call
for a handler on it is answered with an error).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Dict

from ._native import Dispatcher

_weak: "weakref.WeakKeyDictionary[Any, Dispatcher]" = weakref.WeakKeyDictionary()
_strong: Dict[int, Dispatcher] = {}


def _lookup(loop: Any) -> Any:
    try:
        return _weak.get(loop)
    except TypeError:  # a loop type without weak references
        return _strong.get(id(loop))


def dispatcher(loop: asyncio.AbstractEventLoop) -> Dispatcher:
    """The job queue of ``loop`` (made and attached on first use)."""
    d = _lookup(loop)
    if d is not None:
        return d
    d = Dispatcher()
    fd = d.fileno()
    if fd >= 0:
        try:
            loop.add_reader(fd, d.drain)
        except NotImplementedError:
            fd = -1
    if fd < 0:
        d.use_call_soon_threadsafe(loop)
    try:
        _weak[loop] = d
    except TypeError:
        _strong[id(loop)] = d
    _on_close(loop, d, fd)
    return d


def _on_close(loop: Any, d: Dispatcher, fd: int) -> None:
    """Closes ``d`` when ``loop`` closes (jobs for a closed loop would wait forever)."""
    close = loop.close

    def closing() -> None:
        if fd >= 0 and not loop.is_closed():
            try:
                loop.remove_reader(fd)
            except Exception:  # noqa: BLE001 - the loop may be half torn down
                pass
        d.close()
        _strong.pop(id(loop), None)
        close()

    try:
        loop.close = closing
    except (AttributeError, TypeError):  # a loop type whose methods cannot be replaced
        pass
