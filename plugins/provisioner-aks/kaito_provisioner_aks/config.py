"""Where the AKS cluster is: from constructor arguments first, then the environment.

Resolved lazily (on the first ensure/delete), because the plugin is registered in every ``kaito``
command, most of which never touch Azure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"
ENV_RESOURCE_GROUP = "AKS_RESOURCE_GROUP"
ENV_CLUSTER = "AKS_CLUSTER_NAME"


@dataclass(frozen=True)
class AKSConfig:
    subscription_id: str
    resource_group: str
    cluster_name: str


class ConfigError(ValueError):
    """The provisioner cannot run: something it needs is not set. The message says what and how."""


def resolve_config(
    subscription_id: str | None = None,
    resource_group: str | None = None,
    cluster_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> AKSConfig:
    env = os.environ if environ is None else environ
    values = {
        ENV_SUBSCRIPTION: (subscription_id or env.get(ENV_SUBSCRIPTION, "")).strip(),
        ENV_RESOURCE_GROUP: (resource_group or env.get(ENV_RESOURCE_GROUP, "")).strip(),
        ENV_CLUSTER: (cluster_name or env.get(ENV_CLUSTER, "")).strip(),
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        names = ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"The AKS provisioner is not configured: {names} {verb} not set. Set {names} in the "
            "operator's environment (the kaito operator Deployment's env) to the subscription ID, resource "
            "group and name of the AKS cluster that should get the GPU node pools."
        )
    return AKSConfig(values[ENV_SUBSCRIPTION], values[ENV_RESOURCE_GROUP], values[ENV_CLUSTER])
