"""Entry point module of ``kaito-provisioner-aks`` (group ``kaito.provisioners``)."""

from __future__ import annotations

from collections.abc import Callable

from kaito_core.plugins import Provisioner, hookimpl
from kaito_provisioner_aks.provisioner import AKSProvisioner


@hookimpl
def kaito_register_provisioners(register: Callable[[Provisioner], None]) -> None:
    # Construction reads no configuration and makes no network call; that happens on first use.
    register(AKSProvisioner())
