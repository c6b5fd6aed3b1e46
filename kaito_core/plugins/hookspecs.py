"""pluggy hook specifications, in the register-callback style of ``llm`` and ``datasette``.

A plugin module implements any of these with ``@kaito_core.plugins.hookimpl`` and calls ``register``
once per object it contributes::

    @hookimpl
    def kaito_register_presets(register):
        register(Preset(name="my-model", ...))

``kaito_register_commands(cli)`` receives the ``kaito`` click group itself, as ``llm``'s
``register_commands`` does, and adds subcommands to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from kaito_core.plugins.presets import Preset
from kaito_core.plugins.provisioners import Provisioner
from kaito_core.plugins.runtimes import Runtime

if TYPE_CHECKING:
    import click

PROJECT = "kaito"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def kaito_register_presets(register: Callable[[Preset], None]) -> None:
    """Register model presets."""


@hookspec
def kaito_register_runtimes(register: Callable[[Runtime], None]) -> None:
    """Register inference runtimes."""


@hookspec
def kaito_register_provisioners(register: Callable[[Provisioner], None]) -> None:
    """Register node provisioners."""


@hookspec
def kaito_register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``kaito`` command (``@cli.command()`` or ``cli.add_command(...)``)."""
