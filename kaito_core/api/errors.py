"""FieldError: one problem with one field of a Workspace, with the path a user can find it by."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class FieldError:
    """A problem at ``path`` (``inference.adapters[3].strength``; empty for the whole object).

    ``severity`` is ``"warning"`` for problems that do not block the Workspace, e.g. insufficient GPU
    memory under the ``kaito.sh/bypass-resource-checks`` annotation.
    """

    path: str
    message: str
    severity: Severity = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{prefix}{self.path}: {self.message}" if self.path else f"{prefix}{self.message}"


def errors_only(problems: Iterable[FieldError]) -> list[FieldError]:
    """The problems that block the Workspace (drops warnings)."""
    return [p for p in problems if p.is_error]


def warnings_only(problems: Iterable[FieldError]) -> list[FieldError]:
    return [p for p in problems if not p.is_error]


class WorkspaceError(ValueError):
    """A Workspace manifest that cannot be read; ``errors`` lists every problem with its path."""

    def __init__(
        self, errors: Sequence[FieldError], source: str = "", objects: Sequence[str] | None = None
    ) -> None:
        self.errors = list(errors)
        self.source = source
        #: for each error, the object it belongs to ("Workspace/phi-3"), when known
        self.objects = list(objects) if objects is not None else [""] * len(self.errors)
        lines = []
        for error, obj in zip(self.errors, self.objects, strict=False):
            prefix = "".join(f"{part}: " for part in (source, obj) if part)
            lines.append(f"{prefix}{error}")
        super().__init__("\n".join(lines) or f"{source or 'input'}: invalid Workspace")


def join_path(*parts: str | int) -> str:
    """``join_path("inference", "adapters", 3, "strength") == "inference.adapters[3].strength"``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{part}"
        else:
            out = part
    return out
