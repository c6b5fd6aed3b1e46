"""Pure planning: Workspace + registry + hardware -> Plan. No I/O in this package.

    from kaito_core.planning import plan_workspace, Hardware, PlanError

    plan = plan_workspace(workspace, registry, Hardware.from_instance_type(sku, 1))
"""

from kaito_core.planning.errors import PlanError
from kaito_core.planning.hardware import Hardware
from kaito_core.planning.plan import (
    ADAPTER_DIR,
    CONFIG_DIR,
    MODEL_DIR,
    SERVING_PORT,
    AdapterPlan,
    MemoryEstimate,
    Plan,
    Resources,
)
from kaito_core.planning.planner import describe_memory, plan_workspace, suggest_instance_types

__all__ = [
    "ADAPTER_DIR",
    "CONFIG_DIR",
    "MODEL_DIR",
    "SERVING_PORT",
    "AdapterPlan",
    "Hardware",
    "MemoryEstimate",
    "Plan",
    "PlanError",
    "Resources",
    "describe_memory",
    "plan_workspace",
    "suggest_instance_types",
]
