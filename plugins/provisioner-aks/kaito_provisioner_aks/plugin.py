"""Entry point module of ``kaito-provisioner-aks`` (group ``kaito.provisioners``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kaito_core.plugins import Provisioner, hookimpl
from kaito_provisioner_aks.provisioner import AKSProvisioner

if TYPE_CHECKING:
    import click


@hookimpl
def kaito_register_provisioners(register: Callable[[Provisioner], None]) -> None:
    # Construction reads no configuration and makes no network call; that happens on first use.
    register(AKSProvisioner())


@hookimpl
def kaito_register_commands(cli: click.Group) -> None:
    from kaito_provisioner_aks.commands import aks, gpu_provisioner

    cli.add_command(aks)
    cli.add_command(gpu_provisioner)
