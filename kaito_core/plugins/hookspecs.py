"""pluggy hook specifications, in the register-callback style of ``llm`` and ``datasette``.

A plugin module implements any of these with ``@kaito_core.plugins.hookimpl`` and calls ``register``
once per object it contributes::

    @hookimpl
    def kaito_register_presets(register):
        register(Preset(name="my-model", ...))
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from kaito_core.plugins.contracts import Preset, Provisioner, Runtime

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
