"""Class-based services: the Python counterpart of Rust's ``#[qtalk::service]``.

    class Text(qtalk_rs.Service):
        async def upper(self, text: str) -> str:
            return text.upper()

        @qtalk_rs.selector("Find")
        def lookup(self, word: str) -> int:          # sync methods run in the executor
            ...

        async def whoami(self, call: qtalk_rs.Call) -> str:   # takes the call first
            return call.selector

    mux = Text().into_mux()                 # or mux.handle("text/", Text())
    text = Text.client(peer)                # await text.upper("hello") -> "HELLO"

Each public method is a selector: its name in Go's exported style (``to_upper`` is
``ToUpper``) unless ``@selector`` names it, taking its parameters as a positional array, as
Go's ``fn.HandlerFrom`` exports a struct's methods (so either side may be Go or Rust). A method
whose first parameter is named ``call`` (or annotated ``Call``) gets the call first. What it
returns is the reply; raising ``RemoteError`` answers with an error.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, ClassVar, Dict, Optional, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def selector(name: str) -> Callable[[F], F]:
    """Names the selector of a service method (instead of its Go-style name)."""

    def mark(fn: F) -> F:
        setattr(fn, "_qtalk_selector", name)
        return fn

    return mark


def go_name(name: str) -> str:
    """``to_upper`` -> ``ToUpper``: a method name in Go's exported style."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _takes_call(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    first = params[0]
    if first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        return False
    ann = first.annotation
    named = getattr(ann, "__name__", ann if isinstance(ann, str) else None)
    return first.name == "call" or named in ("Call", "qtalk_rs.Call")


def _handler(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` as a handler ``h(call, *params)``."""
    if _takes_call(method):
        return method
    sig = inspect.signature(method)
    call_param = inspect.Parameter("call", inspect.Parameter.POSITIONAL_ONLY)
    wrapped_sig = sig.replace(parameters=[call_param, *sig.parameters.values()])
    handler: Callable[..., Any]
    if inspect.iscoroutinefunction(method):

        async def handler(call: Any, *args: Any) -> Any:
            return await method(*args)

    else:

        def handler(call: Any, *args: Any) -> Any:
            return method(*args)

    functools.update_wrapper(handler, method)
    setattr(handler, "__signature__", wrapped_sig)
    return handler


class Service:
    """Base class of a class-based service (see the module's documentation)."""

    #: selector -> method name, for each class.
    __qtalk_selectors__: ClassVar[Dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: Dict[str, str] = {}
        seen = set()
        for klass in cls.__mro__:
            if klass is Service or klass is object:
                continue
            for name, attr in vars(klass).items():
                if name.startswith("_") or name in seen:
                    continue
                seen.add(name)
                if isinstance(attr, (staticmethod, classmethod, property)) or not callable(attr):
                    continue
                sel = getattr(attr, "_qtalk_selector", None) or go_name(name)
                if sel in table:
                    raise TypeError(
                        f"{cls.__name__}: methods {table[sel]!r} and {name!r} share the "
                        f"selector {sel!r}"
                    )
                table[sel] = name
        cls.__qtalk_selectors__ = table

    def into_mux(self) -> Any:
        """A ``RespondMux`` routing each method's selector to this instance."""
        from ._native import RespondMux

        mux = RespondMux()
        for sel, name in self.__qtalk_selectors__.items():
            mux.handle(sel, _handler(getattr(self, name)))
        return mux

    @classmethod
    def client(cls, caller: Any, prefix: str = "") -> Any:
        """Calls the service through ``caller`` (a ``Peer`` or ``Caller``): one coroutine
        method per service method, with the same name (``await client.upper("x")``) and a
        ``timeout=`` keyword. ``prefix`` is where the service is mounted (``"text/"``)."""
        return ServiceClient(caller, cls.__qtalk_selectors__, prefix)


class ServiceClient:
    """The client of a ``Service`` class (``Service.client(peer)``)."""

    def __init__(self, caller: Any, selectors: Dict[str, str], prefix: str = "") -> None:
        base = prefix.strip("/")
        self._caller = caller
        self._selectors = {
            name: (f"{base}/{sel}" if base else sel) for sel, name in selectors.items()
        }

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            sel = self._selectors[name]
        except KeyError:
            raise AttributeError(f"the service has no method {name!r}") from None
        call = self._caller.call

        def method(*args: Any, timeout: Optional[float] = None) -> Any:
            return call(sel, *args, timeout=timeout)

        method.__name__ = name
        return method

    def __dir__(self) -> Any:
        return [*super().__dir__(), *self._selectors]
