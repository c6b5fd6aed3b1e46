"""Shared output helpers: data to stdout (table, YAML or JSON), errors to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

OUTPUT_OPTION = click.option(
    "-o", "--output", "output", type=click.Choice(["table", "yaml", "json"]), default="table",
    show_default=True, help="Output format.",
)


def emit_data(data: Any, output: str) -> None:
    """Print structured data as YAML or JSON on stdout."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
    else:
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


def emit_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """Print a table on stdout (plain when not a terminal, so it can be piped)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    Console(width=200 if not sys.stdout.isatty() else None, soft_wrap=True).print(table)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
