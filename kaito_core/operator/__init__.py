"""The Kubernetes operator: kopf handlers that reconcile Workspaces into nodes, workloads and status.

All Kubernetes I/O of the project lives here; what to create is decided by ``kaito_core.planning``.
"""

from kaito_core.operator.config import OperatorConfig

__all__ = ["OperatorConfig"]
