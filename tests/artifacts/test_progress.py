"""Progress bars speak binary units, as the summaries do."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console
from rich.progress import Progress

from kaito_core.artifacts.progress import columns


def test_the_bar_shows_mib_not_mb() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with Progress(*columns(), console=console, auto_refresh=False) as progress:
        task = progress.add_task("pull", total=300 * 2**20)
        progress.advance(task, 150 * 2**20)
        progress.refresh()
    text = out.getvalue()
    assert "150.0/300.0 MiB" in text and " MB" not in text
    speed = columns()[3]
    assert str(speed.render(SimpleNamespace(finished_speed=None, speed=3 * 2**20))) == "3.0 MiB/s"
