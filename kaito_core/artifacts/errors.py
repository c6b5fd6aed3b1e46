"""The one exception the artifacts package raises for anything a user can act on."""

from __future__ import annotations


class ArtifactError(Exception):
    """A registry, store or cache problem, worded as one line: what failed, where, and what to do.

    Messages never contain credentials: they are built from host names, references and status codes
    only, never from request headers or URLs that could carry a secret.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line, whatever was interpolated


def connection_problem(exc: Exception) -> str:
    """A connection failure in a few words (never the exception text, which may hold a URL)."""
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "resolve" in text:
        return "host name not found"
    if "timed out" in text or "timeout" in text:
        return "timed out"
    if "reset" in text or "aborted" in text or "remotedisconnected" in text:
        return "connection reset"
    return "connection error"
