"""The one exception the artifacts package raises for anything a user can act on."""

from __future__ import annotations


class ArtifactError(Exception):
    """A registry, store or cache problem, worded as one line: what failed, where, and what to do.

    Messages never contain credentials: they are built from host names, references and status codes
    only, never from request headers or URLs that could carry a secret.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))  # always one line, whatever was interpolated
