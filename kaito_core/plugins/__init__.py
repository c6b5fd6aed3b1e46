"""The plugin SDK: the one part of kaito_core a plugin imports.

Everything a preset, runtime, provisioner or command plugin needs is importable from here::

    from kaito_core.plugins import Preset, Runtime, Plan, Engine, hookimpl

- the hooks: ``hookimpl`` (``kaito_register_presets``, ``_runtimes``, ``_provisioners``, ``_commands``);
- presets: ``Preset`` and its parts (``ModelSource``, ``WeightFormat``, ``WeightFile``, ``Architecture``,
  ``Requirements``, ``TuningSupport``), sizes in bytes (``KiB``, ``MiB``, ``GiB``);
- runtimes: ``Runtime``, the ``Plan`` it builds a container for (``AdapterPlan``, ``PodResources``,
  ``MemoryEstimate``, the pod paths ``POD_WEIGHTS_DIR``, ``ADAPTER_DIR``, ``CONFIG_DIR``,
  ``SERVING_PORT``), and the ``Engine`` it serves with (``EngineConfig``, ``SamplingParams``,
  ``Chunk``, ``EngineHealth``, ``ChatMessage``), with the sandboxed ``ChatTemplate`` helper;
- provisioners: ``Provisioner``, ``InstanceType``, ``NodeRequest``, ``ProvisionResult``;
- errors a plugin may raise: ``PlanError`` (a Plan it cannot serve), ``RequestError`` (a request the
  client must fix), ``PluginError``;
- ``Registry``, to test a plugin without installing it (``Registry().register(module)``).

A test (tests/plugins/test_sdk_face.py) fails when a plugin imports any other part of kaito_core.
"""

from kaito_core.plugins.catalog import catalog_preset, catalog_weight_files
from kaito_core.plugins.chat_template import FALLBACK_TEMPLATE, ChatTemplate, ChatTemplateError
from kaito_core.plugins.engine import (
    ChatMessage,
    Chunk,
    Engine,
    EngineConfig,
    EngineHealth,
    SamplingParams,
    TokenLogprob,
)
from kaito_core.plugins.errors import PlanError, PluginError, RequestError
from kaito_core.plugins.hookspecs import hookimpl
from kaito_core.plugins.plan import (
    ADAPTER_DIR,
    CONFIG_DIR,
    POD_WEIGHTS_DIR,
    SERVING_PORT,
    AdapterPlan,
    MemoryEstimate,
    Plan,
    PodResources,
)
from kaito_core.plugins.presets import (
    DTYPE_BYTES,
    Architecture,
    ModelSource,
    Preset,
    Requirements,
    TuningSupport,
    WeightFile,
    WeightFormat,
)
from kaito_core.plugins.provisioners import InstanceType, NodeRequest, Provisioner, ProvisionResult
from kaito_core.plugins.registry import PluginInfo, Registry, default_registry
from kaito_core.plugins.runtimes import Runtime
from kaito_core.plugins.units import GiB, KiB, MiB

__all__ = [
    "ADAPTER_DIR",
    "CONFIG_DIR",
    "DTYPE_BYTES",
    "FALLBACK_TEMPLATE",
    "POD_WEIGHTS_DIR",
    "SERVING_PORT",
    "AdapterPlan",
    "Architecture",
    "ChatMessage",
    "ChatTemplate",
    "ChatTemplateError",
    "Chunk",
    "Engine",
    "EngineConfig",
    "EngineHealth",
    "GiB",
    "InstanceType",
    "KiB",
    "MemoryEstimate",
    "MiB",
    "ModelSource",
    "NodeRequest",
    "Plan",
    "PlanError",
    "PluginError",
    "PluginInfo",
    "PodResources",
    "Preset",
    "ProvisionResult",
    "Provisioner",
    "Registry",
    "RequestError",
    "Requirements",
    "Runtime",
    "SamplingParams",
    "TokenLogprob",
    "TuningSupport",
    "WeightFile",
    "WeightFormat",
    "catalog_preset",
    "catalog_weight_files",
    "default_registry",
    "hookimpl",
]
