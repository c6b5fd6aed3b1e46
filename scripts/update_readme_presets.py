"""Rewrite the README's preset table from the installed presets (`kaito presets --markdown`)."""

from __future__ import annotations

import sys
from pathlib import Path

from kaito_core.cli.plugins_cmd import README_BEGIN, README_END, presets_markdown
from kaito_core.plugins import default_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def updated(text: str, table: str) -> str:
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_BEGIN}\n{table}{README_END}{tail}"


def main() -> int:
    text = README.read_text()
    README.write_text(updated(text, presets_markdown(default_registry())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
