"""``kaito data fetch``: the tuning Job's data step (also usable by hand)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("data")
def data() -> None:
    """Training data for tuning."""


@data.command("fetch")
@click.argument("urls", nargs=-1, required=True)
@click.option(
    "--dest", required=True, type=click.Path(file_okay=False), help="Directory to write the files to."
)
@click.option("--retries", default=3, show_default=True, type=click.IntRange(min=1))
def fetch_cmd(urls: tuple[str, ...], dest: str, retries: int) -> None:
    """Download public http(s) URLS into DEST; loopback, link-local, metadata and private addresses are
    refused, also after redirects and DNS resolution."""
    from kaito_core.artifacts.download import fetch
    from kaito_core.artifacts.errors import ArtifactError

    try:
        files = fetch(list(urls), Path(dest), retries=retries)
    except ArtifactError as exc:
        raise click.ClickException(str(exc)) from None
    for path in files:
        click.echo(f"fetched {path} ({path.stat().st_size} bytes)")


def register(group: click.Group) -> None:
    group.add_command(data)
