"""Exceptions of qtalk_rs.

``QtalkError`` is the base of every failure the module raises for a call, a stream or a
session. Connecting and binding raise ``OSError`` (a refused TCP connection is
``ConnectionRefusedError``), except a connect that times out (``TimeoutError``).
"""

from __future__ import annotations

import builtins


class QtalkError(Exception):
    """A call, stream or session failed; the subclasses say why."""


class RemoteError(QtalkError):
    """The responder answered the call with an error.

    ``text`` is its text (``message`` too); ``str()`` reads ``remote: <text>``, as Go prints it.
    A handler raises it to answer with an error on purpose: the text goes to the caller, and
    nothing is logged (any other exception is logged at ERROR with its traceback).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def message(self) -> str:
        """The responder's text (the same as ``text``)."""
        return self.text

    def __str__(self) -> str:
        return f"remote: {self.text}"

    def __repr__(self) -> str:
        return f"RemoteError({self.text!r})"


class SessionClosedError(QtalkError, ConnectionError):
    """The session is gone: closed by either side, lost, or ended by a protocol error. No call
    can be made or finished on it; a new connection is needed."""


class TimeoutError(QtalkError, builtins.TimeoutError):
    """A call (``timeout=``), a connect (``timeout=``) or a session step did not finish in
    time. Also a ``builtins.TimeoutError``, as ``asyncio.wait_for`` raises."""


class RefusedError(QtalkError, ConnectionError):
    """The peer refused to open the call's channel (it is at its channel limit, say)."""


class FrameTooLargeError(QtalkError):
    """An rpc frame exceeds the configured maximum (``Options(max_frame=...)``)."""
