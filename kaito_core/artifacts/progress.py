"""Progress bars for push and pull: bytes, bytes/s and ETA on stderr; nothing when not a terminal.

Sizes are binary (MiB, GiB), as every summary kaito prints is.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any


def columns() -> tuple[Any, ...]:
    """The bar's columns: description, bar, done/total, speed, time left, all in binary units."""
    from rich.progress import BarColumn, DownloadColumn, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class BinarySpeed(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            shown = f"{speed / 2**20:.1f} MiB/s" if speed is not None else "?"
            return Text(shown, style="progress.data.speed")

    return (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        BinarySpeed(),
        TimeRemainingColumn(),
    )


class Transfer:
    """One bar for the whole transfer; ``advance`` may be called from several threads."""

    def __init__(self, description: str, total: int, enabled: bool = True) -> None:
        self._progress: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        from rich.progress import Progress

        self._progress = Progress(*columns(), console=console, transient=False)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def __enter__(self) -> Transfer:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
