"""Exceptions of qtalk_rs."""

from __future__ import annotations


class QtalkError(Exception):
    """A call failed other than by the responder's error: the session or channel ended, a
    value could not be encoded or decoded, a frame was too large."""


class RemoteError(QtalkError):
    """The responder answered the call with an error.

    ``message`` is its text; ``str()`` reads ``remote: <message>``, as Go prints it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"remote: {self.message}"

    def __repr__(self) -> str:
        return f"RemoteError({self.message!r})"
