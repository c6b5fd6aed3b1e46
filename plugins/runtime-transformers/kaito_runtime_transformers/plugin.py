"""Entry point of kaito-runtime-transformers (groups ``kaito.runtimes`` and ``kaito.commands``).

The trainer is part of this distribution, not a ``kaito.trainers`` plugin: the core never calls a
trainer in-process. A tuning Job's container and `kaito run tuning.yaml` both run the ``kaito tune``
command as a process (the same argv in a pod and on a laptop), so a command is the whole contract;
and it shares this runtime's stack (torch, transformers, peft), its model loading and its image.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from kaito_core.plugins import Runtime, hookimpl
from kaito_runtime_transformers.runtime import TransformersRuntime

RUNTIME = TransformersRuntime()


@hookimpl
def kaito_register_runtimes(register: Callable[[Runtime], None]) -> None:
    register(RUNTIME)


@hookimpl
def kaito_register_commands(cli: click.Group) -> None:
    from kaito_runtime_transformers.cli import tune_command

    cli.add_command(tune_command)
