"""Workspace + registry + hardware -> Plan: which runtime, which weights, how many GPUs and nodes.

Pure: the Workspace, the inference ConfigMap's parsed ``inference_config.yaml`` and the target hardware
come in as values; nothing here reads files, the cluster or the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kaito_core.api.names import RUNTIME_ANNOTATION
from kaito_core.planning.fit import (
    Fit,
    NoFit,
    fit_host_memory,
    fit_llamacpp,
    fit_vllm,
    kaito_total_memory_check,
)
from kaito_core.planning.gpus import (
    DEFAULT_LLAMACPP_OVERHEAD,
    DEFAULT_VLLM_OVERHEAD,
    gpu_memory_utilization,
    supports_bf16,
)
from kaito_core.planning.hardware import Hardware
from kaito_core.planning.quantity import gib, mebibytes
from kaito_core.plugins import (
    AdapterPlan,
    Plan,
    PlanError,
    PluginError,
    PodResources,
    Preset,
    Registry,
    Runtime,
)

if TYPE_CHECKING:
    from kaito_core.api.models import Workspace

#: The smallest context the planner shrinks an unconfigured context to (KAITO's estimator default).
MIN_CONTEXT = 2048
MAX_SUGGESTIONS = 6


@dataclass(frozen=True)
class _RuntimeInfo:
    name: str
    formats: tuple[str, ...]
    needs_gpu: bool
    obj: Runtime | None  # None when the runtime plugin is not installed


#: What the planner knows of the runtimes the project ships, for when their plugin is not installed.
_KNOWN_RUNTIMES = {"vllm": (("safetensors",), True), "llamacpp": (("gguf",), False)}


def plan_workspace(
    workspace: Workspace,
    registry: Registry,
    hardware: Hardware,
    inference_config: Mapping[str, Any] | None = None,
) -> Plan:
    """Plan the Workspace's inference on ``hardware``; raise PlanError when it cannot run there.

    ``inference_config`` is the parsed ``inference_config.yaml`` of the ConfigMap ``inference.config``
    names (KAITO's layout: a section per runtime, e.g. ``{"vllm": {"max-model-len": 4096}}``; a
    top-level ``max-model-len`` is read too).
    """
    try:
        return _plan(workspace, registry, hardware, inference_config or {})
    except PlanError as error:
        if error.suggestions or hardware.kind == "local":
            raise
        suggestions = suggest_instance_types(workspace, registry, inference_config)
        if not suggestions:
            raise
        raise PlanError(
            f"{error.message}. Instance types that fit: {', '.join(suggestions)}", suggestions
        ) from None


def suggest_instance_types(
    workspace: Workspace, registry: Registry, inference_config: Mapping[str, Any] | None = None
) -> tuple[str, ...]:
    """Instance types of the installed provisioners' catalogs on which one node runs the Workspace."""
    fitting = []
    try:
        catalog = registry.instance_types()
    except Exception:  # a broken provisioner plugin must not hide the planning error itself
        return ()
    for instance_type in catalog.values():
        try:
            _plan(workspace, registry, Hardware.from_instance_type(instance_type, 1), inference_config or {})
        except PlanError:
            continue
        fitting.append(instance_type)
    fitting.sort(key=lambda it: (it.total_gpu_memory, it.gpu_count, it.name))
    return tuple(it.name for it in fitting[:MAX_SUGGESTIONS])


# -------------------------------------------------------------------------------------------- core


def _plan(workspace: Workspace, registry: Registry, hardware: Hardware, config: Mapping[str, Any]) -> Plan:
    preset = _preset(workspace, registry)
    annotation = (workspace.metadata.annotations or {}).get(RUNTIME_ANNOTATION)
    if annotation:
        if annotation not in preset.runtimes:
            raise PlanError(
                f"the {RUNTIME_ANNOTATION} annotation asks for runtime {annotation!r}, but preset "
                f"{preset.name} supports {', '.join(preset.runtimes)}"
            )
        candidates = [annotation]
    else:
        candidates = [preset.default_runtime, *[r for r in preset.runtimes if r != preset.default_runtime]]

    failures: list[tuple[str, str]] = []
    fits: list[tuple[_RuntimeInfo, Fit]] = []
    for name in candidates:
        info = _runtime_info(name, registry)
        if info is None:
            failures.append((name, f"no runtime plugin named {name!r} is installed"))
            continue
        try:
            fit = _fit(preset, info, hardware, config)
        except NoFit as why:
            failures.append((name, str(why)))
            continue
        fits.append((info, fit))
        if info.obj is not None:
            break  # the first installed runtime that fits wins; others were only worse choices
    if not fits:
        raise PlanError(_nothing_fits(preset, hardware, failures))
    installed = [(info, fit) for info, fit in fits if info.obj is not None]
    info, fit = installed[0] if installed else fits[0]
    reason = _reason(preset, info, fit, annotation, failures)
    return _build(workspace, preset, info, fit, hardware, config, reason)


def _preset(workspace: Workspace, registry: Registry) -> Preset:
    inference = workspace.inference
    if inference is None:
        raise PlanError(
            "the Workspace has no inference section; the planner plans inference (tuning runs as a Job on "
            "the Workspace's instance type)"
        )
    if inference.preset is None:
        if inference.template is not None:
            raise PlanError(
                "the Workspace runs a custom inference.template: its pod runs as written, "
                "there is no preset to plan"
            )
        raise PlanError("Preset or Template must be specified")
    try:
        preset = registry.preset(inference.preset.name)
    except PluginError:
        known = ", ".join(sorted(registry.presets())) or "none installed"
        raise PlanError(
            f"Unsupported inference preset name {inference.preset.name} (installed presets: {known})"
        ) from None
    if preset.deprecated:
        raise PlanError(f"Model {preset.name} is deprecated and no longer supported")
    return preset


def _runtime_info(name: str, registry: Registry) -> _RuntimeInfo | None:
    runtime = registry.runtimes().get(name)
    if runtime is not None:
        return _RuntimeInfo(name, tuple(runtime.formats), bool(runtime.needs_gpu), runtime)
    if name in _KNOWN_RUNTIMES:
        formats, needs_gpu = _KNOWN_RUNTIMES[name]
        return _RuntimeInfo(name, formats, needs_gpu, None)
    return None


def _fit(preset: Preset, info: _RuntimeInfo, hardware: Hardware, config: Mapping[str, Any]) -> Fit:
    section = _section(config, info.name)
    explicit = _explicit_context(config, section, preset)
    configured = explicit or preset.max_model_len or preset.architecture.context_length
    if info.needs_gpu and not hardware.has_gpu:
        raise NoFit(f"{info.name} needs an NVIDIA GPU and {hardware.description} has none")
    if "gguf" in info.formats:
        overhead_of = _overhead(info, DEFAULT_LLAMACPP_OVERHEAD)
        return _with_context(
            configured,
            explicit is not None,
            lambda ctx: fit_llamacpp(preset, hardware, ctx, overhead_of(ctx), info.name),
        )
    weights = next((f for f in preset.formats if f.format in info.formats), None)
    if weights is None:
        raise NoFit(
            f"preset {preset.name} has no weights in a format {info.name} serves ({', '.join(info.formats)})"
        )
    if not info.needs_gpu and not hardware.has_gpu:  # e.g. transformers on a CPU
        overhead_cpu = _overhead(info, DEFAULT_LLAMACPP_OVERHEAD)
        return _with_context(
            configured,
            explicit is not None,
            lambda ctx: fit_host_memory(preset, weights, hardware, ctx, overhead_cpu(ctx), info.name),
        )
    kaito_total_memory_check(preset, hardware)
    utilization = _utilization(section, hardware)
    overhead_of = _overhead(info, DEFAULT_VLLM_OVERHEAD)

    def attempt(ctx: int) -> Fit:
        fit = fit_vllm(preset, weights, hardware, ctx, overhead_of(ctx), utilization)
        return replace(fit, runtime=info.name)

    return _with_context(configured, explicit is not None, attempt)


def _with_context(configured: int, explicit: bool, attempt: Callable[[int], Fit]) -> Fit:
    """Fit at the configured context; when the user did not set one, halve it until it fits."""
    contexts = [configured]
    if not explicit:
        while contexts[-1] // 2 >= MIN_CONTEXT:
            contexts.append(contexts[-1] // 2)
    errors: list[NoFit] = []
    for ctx in contexts:
        try:
            return attempt(ctx)
        except NoFit as error:
            errors.append(error)
    if len(errors) == 1:
        raise errors[0]
    raise NoFit(f"{errors[-1]} (tried context lengths from {configured} down to {contexts[-1]} tokens)")


def _overhead(info: _RuntimeInfo, default: int) -> Callable[[int], int]:
    """The runtime's own overhead figure when its plugin is installed, else the documented default."""
    runtime = info.obj
    if runtime is None:
        return lambda ctx: default
    return lambda ctx: int(runtime.overhead_bytes(ctx))


def _section(config: Mapping[str, Any], runtime: str) -> Mapping[str, Any]:
    section = config.get(runtime)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise PlanError(
            f"inference config: the {runtime!r} section must be a mapping of options, got {section!r}"
        )
    return section


def _explicit_context(config: Mapping[str, Any], section: Mapping[str, Any], preset: Preset) -> int | None:
    value = section.get("max-model-len", config.get("max-model-len"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise PlanError(f"inference config: max-model-len must be a positive whole number, got {value!r}")
    length = int(value)
    if length <= 0:
        raise PlanError(f"inference config: max-model-len must be a positive whole number, got {value!r}")
    limit = preset.architecture.context_length
    if length > limit:
        raise PlanError(f"max-model-len {length} exceeds model's maximum supported context window {limit}")
    return length


def _utilization(section: Mapping[str, Any], hardware: Hardware) -> float:
    value = section.get("gpu-memory-utilization")
    if value is None:
        return gpu_memory_utilization(hardware.gpu_model)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0 < number <= 1:
        raise PlanError(f"inference config: gpu-memory-utilization must be a number in (0, 1], got {value!r}")
    return number


def _nothing_fits(preset: Preset, hardware: Hardware, failures: list[tuple[str, str]]) -> str:
    if len(failures) == 1:
        return failures[0][1]
    listed = "; ".join(f"{name}: {why}" for name, why in failures)
    return f"preset {preset.name} fits no runtime on {hardware.description} ({listed})"


def _reason(
    preset: Preset,
    info: _RuntimeInfo,
    fit: Fit,
    annotation: str | None,
    failures: list[tuple[str, str]],
) -> str:
    if annotation:
        reason = f"the {RUNTIME_ANNOTATION} annotation asks for {info.name}; it fits: {fit.summary}"
    elif info.name == preset.default_runtime:
        reason = f"{info.name} is the preset's default runtime and fits: {fit.summary}"
    else:
        why_not = "; ".join(f"{name} does not fit: {why}" for name, why in failures) or (
            f"{preset.default_runtime} is not installed"
        )
        reason = f"{why_not}; {info.name} fits: {fit.summary}"
    if fit.context_length < (preset.max_model_len or preset.architecture.context_length):
        reason += (
            f"; context shortened to {fit.context_length} tokens to fit "
            "(set max-model-len in the inference config to insist on a length)"
        )
    if info.obj is None:
        reason += (
            f"; note: no runtime plugin named {info.name!r} is installed "
            f"(pip install kaito-runtime-{info.name})"
        )
    return reason


# -------------------------------------------------------------------------------------------- the Plan


def _build(
    workspace: Workspace,
    preset: Preset,
    info: _RuntimeInfo,
    fit: Fit,
    hardware: Hardware,
    config: Mapping[str, Any],
    reason: str,
) -> Plan:
    options: dict[str, Any] = dict(preset.runtime_defaults.get(info.name, {}))
    options.update(_section(config, info.name))
    for decided in ("max-model-len", "gpu-memory-utilization"):
        options.pop(decided, None)  # the Plan carries these as context_length / gpu_memory_utilization
    dtype = str(options.pop("dtype", preset.architecture.dtype))
    if fit.weights.format == "gguf":
        dtype = "float16"  # llama.cpp computes and caches K/V in f16; the weights stay quantized
    elif fit.gpus_per_node and dtype in ("bfloat16", "bf16") and not supports_bf16(
        hardware.compute_capability
    ):
        dtype = "float16"
        reason += (
            f"; dtype float16 because {hardware.gpu_model} "
            f"(compute capability {hardware.compute_capability}) has no bf16"
        )

    if fit.gpus_per_node:
        resources = PodResources(gpu=fit.gpus_per_node)
    else:
        resources = PodResources(cpu=str(fit.threads), memory=mebibytes(fit.memory.required))

    inference = workspace.inference
    assert inference is not None and inference.preset is not None  # checked by _preset
    options_spec = inference.preset.preset_options
    image = (options_spec.image if options_spec and options_spec.image else None) or (
        info.obj.image if info.obj is not None else ""
    )
    return Plan(
        workspace=workspace.metadata.name or "",
        namespace=workspace.metadata.namespace or "default",
        preset=preset.name,
        runtime=info.name,
        runtime_reason=reason,
        weights_format=fit.weights.format,
        quantization=fit.weights.quantization,
        files=fit.weights.files,
        context_length=fit.context_length,
        node_count=fit.node_count,
        gpus_per_node=fit.gpus_per_node,
        tensor_parallel=fit.tensor_parallel,
        pipeline_parallel=fit.pipeline_parallel,
        gpu_memory_utilization=fit.gpu_memory_utilization,
        n_gpu_layers=fit.n_gpu_layers,
        threads=fit.threads,
        instance_type=hardware.instance_type,
        target=hardware.description,
        image=image,
        resources=resources,
        memory=fit.memory,
        adapters=_adapters(inference.adapters),
        chat_template=preset.chat_template,
        served_model_name=preset.name,
        runtime_options=options,
        model_access_secret=options_spec.model_access_secret if options_spec else None,
        dtype=dtype,
        disk_bytes=preset.requirements.disk,
        source_repo=(fit.weights.source or preset.source).repo,
        source_revision=(fit.weights.source or preset.source).revision,
    )


def _adapters(adapters: Any) -> tuple[AdapterPlan, ...]:
    planned = []
    for index, adapter in enumerate(adapters or []):
        source = adapter.source
        if source is None or not source.name:
            raise PlanError(f"inference.adapters[{index}].source.name is required to load the adapter")
        strength_text = adapter.strength if adapter.strength is not None else "1.0"
        try:
            strength = float(strength_text)
        except ValueError:
            strength = -1.0
        if not 0.0 <= strength <= 1.0:
            raise PlanError(
                f"inference.adapters[{index}].strength must be a number in [0, 1] written as a string, "
                f"got {strength_text!r}"
            )
        planned.append(
            AdapterPlan(
                name=source.name,
                # a volume wins over an image, as in KAITO's SetAdapterPuller
                image=None if source.volume_source is not None else source.image,
                strength=strength,
                image_pull_secrets=tuple(source.image_pull_secrets or ()),
                volume=source.volume_source,
            )
        )
    return tuple(planned)


def describe_memory(plan: Plan) -> list[str]:
    """The memory arithmetic of a Plan, one line a step (``kaito plan`` prints it)."""
    if plan.memory is None:
        return []
    m = plan.memory
    return [
        *m.notes,
        f"total: {gib(m.weights)} weights + {gib(m.kv_cache)} KV cache + {gib(m.overhead)} overhead = "
        f"{gib(m.required)} of {gib(m.available)} usable",
    ]
