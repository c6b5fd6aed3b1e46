"""The plugin system: contracts, hook specifications, discovery and the typed registry."""

from kaito_core.plugins.contracts import Architecture as Architecture
from kaito_core.plugins.contracts import (
    GiB,
    InstanceType,
    MiB,
    ModelSource,
    NodeRequest,
    Preset,
    Provisioner,
    ProvisionResult,
    Requirements,
    Runtime,
    TuningSupport,
    WeightFile,
    WeightFormat,
)
from kaito_core.plugins.hookspecs import hookimpl
from kaito_core.plugins.registry import (
    PluginError,
    PluginInfo,
    Registry,
    default_registry,
)

__all__ = [
    "Architecture",
    "GiB",
    "InstanceType",
    "MiB",
    "ModelSource",
    "NodeRequest",
    "PluginError",
    "PluginInfo",
    "Preset",
    "ProvisionResult",
    "Provisioner",
    "Registry",
    "Requirements",
    "Runtime",
    "TuningSupport",
    "WeightFile",
    "WeightFormat",
    "default_registry",
    "hookimpl",
]
