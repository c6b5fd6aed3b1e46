"""The errors a plugin may raise, and that the core shows to the user as they are."""

from __future__ import annotations


class PluginError(Exception):
    """A plugin-related problem worth showing to the user as it is (unknown name, clash, bad object)."""


class PlanError(ValueError):
    """Nothing fits, or the Workspace cannot be planned; ``str(error)`` is the message to show.

    A runtime raises it from ``container(plan)`` when the Plan asks for something it cannot do.
    """

    def __init__(self, message: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        #: Instance types of the catalog on which the same Workspace would fit, smallest first.
        self.suggestions = suggestions


class RequestError(ValueError):
    """A request the server refuses (400 unless ``status`` says otherwise); ``param`` names the field.

    An Engine raises it for a request it cannot serve as asked, which is the client's to fix.
    """

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
