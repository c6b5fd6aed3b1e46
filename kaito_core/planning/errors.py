"""The one error the planner raises: a message a user can act on, and the instance types that would fit."""

from __future__ import annotations


class PlanError(ValueError):
    """Nothing fits, or the Workspace cannot be planned; ``str(error)`` is the message to show."""

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        #: Instance types of the catalog on which the same Workspace would fit, smallest first.
        self.suggestions = suggestions
