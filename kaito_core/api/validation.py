"""The Workspace validation rules, written once and used by the CLI, the admission webhook and the operator.

:func:`validate_workspace` returns every problem at once, each with the path of its field and KAITO's
message where KAITO's webhook has one (its v0.12 ``workspace_validation.go``). As in KAITO, a create is
checked by the create rules and an update by the update rules only: a stored object is not re-judged by
rules that changed since it was admitted. It is pure: it reads the Workspace, the installed plugins
(presets, a provisioner's instance-type catalog), on update the stored Workspace, and in BYO mode the
Nodes it is given; it does no I/O. Rules kept stricter than KAITO's on purpose are listed in docs/api.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaito_core.api import datarules
from kaito_core.api.byo import NodeRuleError, matching_nodes, uniform_gpus
from kaito_core.api.errors import FieldError, Severity
from kaito_core.api.models import InferenceSpec, TuningSpec, Workspace
from kaito_core.api.names import BYPASS_RESOURCE_CHECKS, RUNTIME_ANNOTATION, is_repo_id
from kaito_core.api.rules_meta import annotation_problems, dns1123_label_problem
from kaito_core.api.selectors import (
    RESERVED_SELECTOR_LABELS,
    SelectorError,
    sanitized_labels,
    selector_as_map,
)
from kaito_core.plugins import InstanceType, Preset

if TYPE_CHECKING:
    from kaito_core.plugins import Registry

MAX_ADAPTERS = 10
TRANSFORMERS = "transformers"  # KAITO's second runtime's name (kaito.sh/runtime: transformers)
TUNING_METHODS = ("lora", "qlora")
NAP_REQUIRED = "instanceType is required when node auto-provisioning is enabled"
BYO_EMPTY = "instanceType must be empty when node auto-provisioning is disabled (BYO scenario)"

__all__ = ["MAX_ADAPTERS", "TUNING_METHODS", "dns1123_label_problem", "format_bytes", "validate_workspace"]


def validate_workspace(
    ws: Workspace,
    registry: Registry | None = None,
    *,
    old: Workspace | None = None,
    provisioner: str | None = None,
    nodes: Sequence[Mapping[str, Any]] | None = None,
    node_claims: bool = False,
) -> list[FieldError]:
    """Every problem with ``ws``, errors and warnings (``FieldError.severity``), in field order.

    ``registry``: the installed plugins; without it, checks that need presets or catalogs are skipped.
    ``provisioner``: node auto-provisioning is on, with this installed provisioner: ``instanceType`` is
    required and must be in its catalog (raises :class:`~kaito_core.plugins.PluginError` if it is not
    installed). ``nodes``: node auto-provisioning is off (nodes you bring): the cluster's Node objects,
    of which the rules read those ``resource.labelSelector`` selects. Neither: instance types are only
    sized against the known catalogs. ``node_claims``: node auto-provisioning through Karpenter
    NodeClaims, which has no provisioner plugin: instance types are checked against every installed
    catalog. ``old``: the stored Workspace; the update rules run instead.
    """
    if sum((provisioner is not None, nodes is not None, node_claims)) > 1:
        raise ValueError("give a provisioner, node_claims (node auto-provisioning) or nodes (nodes you "
                         "bring), not more than one")
    return _Checker(ws, registry, provisioner, nodes, node_claims).run(old)


class _Checker:
    def __init__(self, ws: Workspace, registry: Registry | None, provisioner: str | None,
                 nodes: Sequence[Mapping[str, Any]] | None, node_claims: bool = False) -> None:
        self.ws = ws
        self.registry = registry
        self.nodes = nodes
        #: True: node auto-provisioning; False: nodes you bring; None: not known (plain `kaito validate`)
        auto = provisioner is not None or node_claims
        self.nap: bool | None = True if auto else (False if nodes is not None else None)
        self.problems: list[FieldError] = []
        self.catalog: dict[str, InstanceType] | None = None  # the configured provisioner's, when one is
        self.admitted_prefixes: tuple[str, ...] = ()
        self.known_skus: dict[str, InstanceType] = {}  # every catalog, to size presets without one
        if registry is not None:
            if provisioner is not None:
                plugin = registry.provisioner(provisioner)
                self.catalog = dict(plugin.catalog())
                self.known_skus = dict(self.catalog)
                # KAITO admits unknown Azure GPU SKUs (Standard_N*, Standard_D*); a provisioner says so
                self.admitted_prefixes = tuple(getattr(plugin, "admitted_sku_prefixes", ()))
            elif node_claims:
                self.catalog = registry.instance_types()
                self.known_skus = dict(self.catalog)
                self.admitted_prefixes = tuple(
                    prefix for plugin in registry.provisioners().values()
                    for prefix in getattr(plugin, "admitted_sku_prefixes", ())
                )
            else:
                self.known_skus = registry.instance_types()

    def error(self, path: str, message: str, severity: Severity = "error") -> None:
        self.problems.append(FieldError(path, message, severity))

    def add(self, problems: list[tuple[str, str]]) -> None:
        for path, message in problems:
            self.error(path, message)

    def run(self, old: Workspace | None) -> list[FieldError]:
        problem = dns1123_label_problem(self.ws.metadata.name or "")
        if problem:
            self.error("metadata.name", problem)
        if old is None:
            self.check_create()
        else:
            self.check_update(old)
        return list(dict.fromkeys(self.problems))  # a rule reached twice (preset in both sections) once

    # ----------------------------------------------------------------------------------- create

    def check_create(self) -> None:
        ws = self.ws
        preset = self.preset_or_none(ws.preset_name)
        self.add(annotation_problems(ws.annotations, None, self.registry, preset))
        if ws.inference is None and ws.tuning is None:
            self.error("inference", "Either Inference or Tuning must be specified, not neither")
        elif ws.inference is not None and ws.tuning is not None:
            self.error("tuning", "Either Inference or Tuning must be specified, but not both")
        labels = self.check_selector()
        self.check_partition()
        if ws.inference is not None:
            preset = self.preset_or_none(ws.inference.preset.name if ws.inference.preset else None)
            self.check_resource_with_inference(ws.inference, None if preset and preset.deprecated else preset,
                                               labels)
            self.check_inference(ws.inference)
        if ws.tuning is not None:
            self.check_tuning(ws.tuning)
        elif ws.inference is None:
            self.check_instance_type_mode(self.preset_or_none(ws.preset_name))

    def check_selector(self) -> dict[str, str] | None:
        """The selector as plain labels (reserved keys removed), or None when it has no such form."""
        selector = self.ws.resource.label_selector
        path = "resource.labelSelector"
        if not selector.match_labels and not selector.match_expressions:
            self.error(path, "must contain matchLabels or matchExpressions (the labels that select the "
                             "Workspace's GPU nodes)")
            return None
        try:
            labels = selector_as_map(selector)
        except SelectorError as exc:
            self.error(path, f"{exc}; use matchLabels or 'In' matchExpressions with one value")
            return None
        reserved = sorted(k for k in selector.match_labels if k in RESERVED_SELECTOR_LABELS)
        if selector.match_labels and len(reserved) == len(selector.match_labels):
            self.error(f"{path}.matchLabels", "matchLabels must contain at least one non-reserved label")
            return None
        for key in reserved:
            self.error(f"{path}.matchLabels[{key}]", f"labelSelector contains reserved KAITO label {key!r} "
                       "(KAITO puts it on its own nodes and ignores it in a selector); remove it")
        return sanitized_labels(labels)

    def check_partition(self) -> None:
        """KAITO's GPU partitioning rules; a partition KAITO would admit is refused: no plan exists here."""
        if self.ws.resource.partition is None:
            return
        path = "resource.partition"
        if self.ws.tuning is not None:
            self.error(path, "GPU partitioning is not supported for tuning workloads")
        elif self.nap is True:
            self.error(path, "GPU partitioning is only supported with BYO nodes "
                             "(disableNodeAutoProvisioning=true)")
        else:
            self.error(path, f"GPU partitioning ({self.ws.resource.partition.mode}) is not supported by this "
                             "operator: the planner has no plan for MIG or accelerator partitions; remove "
                             "resource.partition to run on whole GPUs")

    def check_instance_type_mode(self, preset: Preset | None) -> bool:
        """KAITO's instanceType rule for the provisioning mode; False when it failed."""
        instance_type = self.ws.resource.instance_type
        if self.nap is False and instance_type:
            self.error("resource.instanceType", BYO_EMPTY)
            return False
        if self.nap is True and not instance_type:
            if preset is not None and preset.requirements.gpu_count == 0:
                return True  # a CPU model runs on a node the user brings; nothing to provision
            self.error("resource.instanceType", NAP_REQUIRED)
            return False
        return True

    def check_resource_with_inference(self, inference: InferenceSpec, preset: Preset | None,
                                      labels: dict[str, str] | None) -> None:
        """KAITO's ResourceSpec.validateCreateWithInference: the nodes (brought or provisioned) against
        the preset; ``preset`` None for a custom template or a preset reported elsewhere."""
        if not self.check_instance_type_mode(preset) or labels is None \
                or resource_partitioned(self.ws):
            return  # a partitioned workload skips the node sizing, as in KAITO (and is refused above)
        resource = self.ws.resource
        if self.nap is False:
            if preset is None or self.nodes is None:
                return  # a custom template: its GPU needs are unknown, so the nodes are not read
            selected = matching_nodes(self.nodes, labels)
            if preset.requirements.gpu_count == 0:
                if not selected:
                    self.error("resource.labelSelector",
                               "No nodes found matching the specified label selector")
                return
            try:
                gpus = uniform_gpus(selected)
            except NodeRuleError as exc:
                self.error("resource.labelSelector", str(exc))
                return
            total, per_gpu = len(selected) * gpus.total_memory, gpus.total_memory // max(gpus.count, 1)
            self.check_gpu_memory(preset, f"{len(selected)} x {gpus.count}x {gpus.product} (nodes you bring)",
                                  total, per_gpu)
            self.check_transformers_multinode(preset, gpus.total_memory)
            return
        sku = None
        if resource.instance_type:
            sku = self.known_skus.get(resource.instance_type)
            prefixes = self.admitted_prefixes
            admitted = bool(prefixes) and resource.instance_type.startswith(prefixes)
            if self.catalog and sku is None and not admitted:
                self.error("resource.instanceType", f"Unsupported instance type {resource.instance_type}. "
                           f"Supported SKUs: {', '.join(sorted(self.catalog))}")
        if preset is None or sku is None:
            return
        if self.nap is True and self.runtime_of(preset) == "vllm":
            return  # as KAITO: with provisioning, vLLM's node count is sized by the planner instead
        self.check_gpu_memory(preset, sku.name, resource.count * sku.total_gpu_memory, sku.gpu_memory)
        self.check_transformers_multinode(preset, sku.total_gpu_memory)

    def check_transformers_multinode(self, preset: Preset, machine_memory: int) -> None:
        """KAITO: a model larger than one machine needs several nodes, which Transformers cannot serve.
        The rule waits for the transformers runtime (the tuning issue adds it); until then the runtime
        annotation itself is refused as not installed."""
        if (self.runtime_of(preset) == TRANSFORMERS and preset.distributed_inference
                and preset.requirements.total_gpu_memory > machine_memory):
            self.error("inference", "Multi-node distributed inference is not supported with Huggingface "
                                    "Transformers runtime")

    def check_gpu_memory(self, preset: Preset, machine: str, total: int, per_gpu: int) -> None:
        bypass = BYPASS_RESOURCE_CHECKS in self.ws.annotations  # KAITO: the annotation's presence
        severity: Severity = "warning" if bypass else "error"
        required = preset.requirements
        if total < required.total_gpu_memory:
            self.error("resource.instanceType",
                       f"Insufficient total GPU memory: Instance type {machine} has a total of "
                       f"{format_bytes(total)}, but preset {preset.name} requires at least "
                       f"{format_bytes(required.total_gpu_memory)}", severity)
        if required.per_gpu_memory and per_gpu < required.per_gpu_memory:
            self.error("resource.instanceType",
                       f"Insufficient per GPU memory: Instance type {machine} has a per GPU memory of "
                       f"{format_bytes(per_gpu)}, but preset {preset.name} requires at least "
                       f"{format_bytes(required.per_gpu_memory)}", severity)

    def check_inference(self, inference: InferenceSpec) -> None:
        preset = None
        if inference.preset is None and inference.template is None:
            self.error("inference", "Preset or Template must be specified")
        elif inference.preset is not None and inference.template is not None:
            self.error("inference", "Preset and Template cannot be set at the same time")
        if inference.preset is not None:
            preset = self.check_preset("inference.preset", inference.preset.name, "inference")
            self.check_access_mode("inference.preset")
        if preset is not None and inference.preset is not None:
            options = inference.preset.preset_options
            secret = options.model_access_secret if options is not None else None
            path = "inference.preset.presetOptions.modelAccessSecret"
            if preset.requires_auth and not secret:
                self.error(path, "This preset requires authentication and needs a modelAccessSecret with "
                                 "HF_TOKEN key under presetOptions to download the model")
            elif secret and not preset.requires_auth and not preset.downloaded_at_runtime:
                self.error(path, "This preset does not require a modelAccessSecret with HF_TOKEN key under "
                                 "presetOptions")
            if self.runtime_of(preset) == "vllm" and any(a.strength is not None for a in inference.adapters):
                self.error("inference.adapters", "Runtime validation: vLLM does not support adapter strength")
        self.check_adapters(inference)

    def check_adapters(self, inference: InferenceSpec) -> None:
        if len(inference.adapters) > MAX_ADAPTERS:
            self.error("inference.adapters",
                       f"Number of Adapters exceeds the maximum limit, maximum of {MAX_ADAPTERS} allowed")
        for i, adapter in enumerate(inference.adapters):
            name = adapter.source.name if adapter.source is not None else None
            self.add(datarules.adapter_problems(f"inference.adapters[{i}]", adapter,
                                                dns1123_label_problem(name) if name else None))
        self.add(datarules.duplicate_adapter_names("inference.adapters", inference.adapters))

    def check_access_mode(self, path: str) -> None:
        """KAITO's deprecated accessMode: private needs the image in presetOptions."""
        section = self.ws.inference if path.startswith("inference") else self.ws.tuning
        preset = section.preset if section is not None else None
        if preset is not None and preset.access_mode == "private":
            image = preset.preset_options.image if preset.preset_options is not None else None
            if not image:
                self.error(f"{path}.presetOptions.image",
                           "When AccessMode is private, an image must be provided in PresetOptions")

    def check_tuning(self, tuning: TuningSpec) -> None:
        preset = None
        if tuning.preset is None:
            self.error("tuning.preset", "required: the preset to tune")
        else:
            preset = self.check_preset("tuning.preset", tuning.preset.name, "tuning")
            self.check_access_mode("tuning.preset")
        if tuning.method is None:
            self.error("tuning.method", f"required: one of {', '.join(TUNING_METHODS)}")
        elif tuning.method.lower() not in TUNING_METHODS:
            self.error("tuning.method",
                       f"Unsupported tuning method {tuning.method}; use one of {', '.join(TUNING_METHODS)}")
        self.check_instance_type_mode(preset)
        if preset is not None:
            if preset.tuning is None:
                self.error("tuning.preset.name", f"preset {preset.name} does not support tuning")
            elif tuning.method and tuning.method.lower() in TUNING_METHODS \
                    and tuning.method.lower() not in preset.tuning.methods:
                self.error("tuning.method", f"preset {preset.name} does not support {tuning.method}; it "
                           f"supports: {', '.join(preset.tuning.methods)}")
            sku = self.known_skus.get(self.ws.resource.instance_type or "")
            if sku is not None:
                self.check_gpu_memory(preset, sku.name, self.ws.resource.count * sku.total_gpu_memory,
                                      sku.gpu_memory)
        if self.ws.resource.count > 1:
            self.error("resource.count", "Tuning does not currently support multinode configurations. "
                       "Please set the node count to 1")
        if tuning.input is None:
            self.error("tuning.input", "required: exactly one of urls, image or volumeSource")
        else:
            self.add(datarules.data_source_on_create("tuning.input", tuning.input))
        if tuning.output is None:
            self.error("tuning.output", "required: an image (with imagePushSecret) or a volumeSource")
        else:
            self.add(datarules.data_destination_on_create("tuning.output", tuning.output))

    # ----------------------------------------------------------------------------------- presets

    def preset_or_none(self, name: str | None) -> Preset | None:
        if name is None or self.registry is None:
            return None
        return self.registry.presets().get(name)

    def runtime_of(self, preset: Preset) -> str:
        return self.ws.annotations.get(RUNTIME_ANNOTATION) or preset.default_runtime

    def check_preset(self, path: str, name: str, purpose: str) -> Preset | None:
        """The installed preset, or None (reported) when it is unknown or deprecated."""
        if self.registry is None:
            return None
        presets = self.registry.presets()
        preset = presets.get(name)
        if preset is None and is_repo_id(name):
            # a Hugging Face repository id (KAITO since v0.9): the Hub decides whether it can be served;
            # `kaito validate`/`kaito plan` read it there, the operator reports its answer in the status
            return None
        if preset is None:
            known = ", ".join(sorted(presets))
            fix = (f"installed presets: {known}" if known
                   else "no presets are installed; install a preset plugin such as kaito-presets-phi3")
            self.error(f"{path}.name", f"Unsupported {purpose} preset name {name}; {fix}")
            return None
        if preset.deprecated:
            self.error(f"{path}.name", f"Model {name} is deprecated and no longer supported")
            return None
        return preset

    # ----------------------------------------------------------------------------------- update

    def check_update(self, old: Workspace) -> None:
        new = self.ws
        self.add(annotation_problems(new.annotations, old.annotations, self.registry,
                                     self.preset_or_none(new.preset_name)))
        for section in ("inference", "tuning"):
            if (getattr(old, section) is None) != (getattr(new, section) is None):
                self.error(section, f"{section.capitalize()} field cannot be toggled once set")
        if old.resource.count != new.resource.count:
            self.error("resource.count", "field is immutable")
        if old.resource.partition != new.resource.partition:
            self.error("resource.partition", "field is immutable")
        self.check_instance_type_update(old.resource.instance_type, new.resource.instance_type)
        try:
            before = selector_as_map(old.resource.label_selector)
            same = before == selector_as_map(new.resource.label_selector)
        except SelectorError:
            self.error("resource.labelSelector", "Only allow matchLabels or 'IN' matchExpression")
        else:
            if not same:
                self.error("resource.labelSelector", "field is immutable")
        if old.inference is not None and new.inference is not None:
            if old.inference.preset != new.inference.preset:
                self.error("inference.preset", "field is immutable")
            if (old.inference.template is None) != (new.inference.template is None):
                self.error("inference.template", "field cannot be unset/set if it was set/unset")
            self.check_adapters(new.inference)
        if old.tuning is not None and new.tuning is not None:
            self.check_tuning_update(old.tuning, new.tuning)

    def check_instance_type_update(self, before: str | None, after: str | None) -> None:
        path = "resource.instanceType"
        if self.nap is True:
            if not after:
                self.error(path, NAP_REQUIRED)
            elif before and before != after:
                self.error(path, "instanceType cannot be changed once set when node auto-provisioning is "
                                 "enabled")
        elif self.nap is False and not before and after:
            self.error(path, BYO_EMPTY)
        elif before and after and before != after:  # clearing it is KAITO's BYO upgrade path
            self.error(path, "instanceType cannot be changed once set")

    def check_tuning_update(self, old: TuningSpec, new: TuningSpec) -> None:
        if new.input is None:
            self.error("tuning.input", "required: exactly one of urls, image or volumeSource")
        else:
            self.add(datarules.data_source_on_update("tuning.input", new.input, old.input))
        if new.output is None:
            self.error("tuning.output", "required: an image (with imagePushSecret) or a volumeSource")
        else:
            self.add(datarules.data_destination_on_update("tuning.output", new.output))
        if old.preset != new.preset:
            self.error("tuning.preset", "Preset cannot be changed")
        if (old.method or "").lower() != (new.method or "").lower():
            self.error("tuning.method", "Method cannot be changed")


def resource_partitioned(ws: Workspace) -> bool:
    return ws.resource.partition is not None


def format_bytes(size: int) -> str:
    """Bytes as Kubernetes quantities: ``16Gi``, ``9.5Gi``, ``512Mi``."""
    from kaito_core.plugins import GiB

    if size >= GiB:
        return f"{size / GiB:.4g}Gi"
    return f"{size / (1024 * 1024):.4g}Mi"
