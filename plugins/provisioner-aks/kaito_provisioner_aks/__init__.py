"""AKS GPU node pools for kaito, through azure-mgmt-containerservice.

One agent pool per Workspace; see ``docs/provisioner-aks.md``.
"""

from kaito_provisioner_aks.config import AKSConfig, ConfigError, resolve_config
from kaito_provisioner_aks.errors import AKSError
from kaito_provisioner_aks.naming import (
    AGENTPOOL_LABEL,
    GPU_TAINT,
    WORKSPACE_LABEL,
    WORKSPACE_NAMESPACE_LABEL,
    node_labels_for,
    node_selector_for,
    pool_name,
)
from kaito_provisioner_aks.provisioner import AKSProvisioner

__all__ = [
    "AGENTPOOL_LABEL",
    "GPU_TAINT",
    "WORKSPACE_LABEL",
    "WORKSPACE_NAMESPACE_LABEL",
    "AKSConfig",
    "AKSError",
    "AKSProvisioner",
    "ConfigError",
    "node_labels_for",
    "node_selector_for",
    "pool_name",
    "resolve_config",
]
