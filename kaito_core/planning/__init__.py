"""Pure planning: Workspace + registry + hardware -> Plan. No I/O in this package.

    from kaito_core.planning import plan_workspace, Hardware, PlanError

    plan = plan_workspace(workspace, registry, Hardware.from_instance_type(sku, 1))

The Plan types are part of the runtime contract and live in ``kaito_core.plugins``.
"""

from kaito_core.planning.hardware import Hardware
from kaito_core.planning.planner import describe_memory, plan_workspace, suggest_instance_types
from kaito_core.plugins import PlanError

__all__ = [
    "Hardware",
    "PlanError",
    "describe_memory",
    "plan_workspace",
    "suggest_instance_types",
]
