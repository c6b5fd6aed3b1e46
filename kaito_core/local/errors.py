"""The one error type of ``kaito run``: a message meant for the user, shown as it is."""

from __future__ import annotations


class LocalRunError(Exception):
    """Something the user can fix: the message names what went wrong, the numbers, and the fix."""
