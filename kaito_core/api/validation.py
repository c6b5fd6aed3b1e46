"""The Workspace validation rules, written once and used by the CLI, the admission webhook and the operator.

:func:`validate_workspace` returns every problem at once, each with the path of its field and, where
KAITO's webhook has one, KAITO's message. It is pure: it reads the Workspace, the installed plugins
(presets, a provisioner's instance-type catalog) and, on update, the old Workspace; it does no I/O.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from kaito_core.api.errors import FieldError, Severity
from kaito_core.api.models import (
    AdapterSpec,
    DataDestination,
    DataSource,
    InferenceSpec,
    TuningSpec,
    Workspace,
)
from kaito_core.api.names import (
    BYPASS_RESOURCE_CHECKS,
    RESERVED_SELECTOR_LABELS,
    RUNTIME_ANNOTATION,
    is_repo_id,
)
from kaito_core.api.urls import url_problem
from kaito_core.plugins import GiB, InstanceType, Preset

if TYPE_CHECKING:
    from kaito_core.plugins import Registry

MAX_ADAPTERS = 10
TUNING_METHODS = ("lora", "qlora")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_workspace(
    ws: Workspace,
    registry: Registry | None = None,
    *,
    old: Workspace | None = None,
    provisioner: str | None = None,
) -> list[FieldError]:
    """Every problem with ``ws``, errors and warnings (``FieldError.severity``), in field order.

    ``registry``: the installed plugins; without it, checks that need presets or catalogs are skipped.
    ``provisioner``: the name of the configured node provisioner; when given, ``resource.instanceType``
    must be in its catalog (raises :class:`~kaito_core.plugins.PluginError` if it is not installed).
    ``old``: the stored Workspace, on update; immutable fields are then checked too.
    """
    return _Checker(ws, registry, provisioner).run(old)


class _Checker:
    def __init__(self, ws: Workspace, registry: Registry | None, provisioner: str | None) -> None:
        self.ws = ws
        self.registry = registry
        self.problems: list[FieldError] = []
        self.catalog: dict[str, InstanceType] | None = None  # the configured provisioner's, when one is
        self.known_skus: dict[str, InstanceType] = {}  # every catalog, to size presets without one
        if registry is not None:
            if provisioner is not None:
                self.catalog = dict(registry.provisioner(provisioner).catalog())
                self.known_skus = dict(self.catalog)
            else:
                self.known_skus = registry.instance_types()

    def error(self, path: str, message: str, severity: Severity = "error") -> None:
        self.problems.append(FieldError(path, message, severity))

    def run(self, old: Workspace | None) -> list[FieldError]:
        ws = self.ws
        self.check_name()
        self.check_annotations()
        self.check_resource()
        if ws.inference is None and ws.tuning is None:
            self.error("inference", "Either Inference or Tuning must be specified, not neither")
        elif ws.inference is not None and ws.tuning is not None:
            self.error("tuning", "Either Inference or Tuning must be specified, but not both")
        if ws.inference is not None:
            self.check_inference(ws.inference)
        if ws.tuning is not None:
            self.check_tuning(ws.tuning)
        if old is not None:
            self.check_update(old)
        return list(dict.fromkeys(self.problems))  # a rule reached twice (preset in both sections) once

    # ----------------------------------------------------------------------------------- metadata

    def check_name(self) -> None:
        problem = dns1123_label_problem(self.ws.metadata.name or "")
        if problem:
            self.error("metadata.name", problem)

    def check_annotations(self) -> None:
        runtime = self.ws.annotations.get(RUNTIME_ANNOTATION)
        if runtime is None or self.registry is None:
            return
        path = f"metadata.annotations[{RUNTIME_ANNOTATION}]"
        runtimes = self.registry.runtimes()
        if runtime not in runtimes:
            known = ", ".join(sorted(runtimes)) or "none installed"
            self.error(path, f"Unsupported runtime {runtime}; installed runtimes: {known}")
            return
        preset = self.preset_or_none(self.ws.preset_name)
        if preset is not None and runtime not in preset.runtimes:
            self.error(path, f"preset {preset.name} does not support runtime {runtime}; "
                             f"it supports: {', '.join(preset.runtimes)}")

    # ----------------------------------------------------------------------------------- resource

    def check_resource(self) -> None:
        resource = self.ws.resource
        if not resource.label_selector.match_labels and not resource.label_selector.match_expressions:
            self.error("resource.labelSelector", "must contain matchLabels or matchExpressions "
                       "(the labels that select the Workspace's GPU nodes)")
        elif resource.label_selector.match_labels and set(resource.label_selector.match_labels) <= (
            RESERVED_SELECTOR_LABELS
        ):  # KAITO ignores the reserved keys, so the selector would match every node
            self.error("resource.labelSelector.matchLabels",
                       "matchLabels must contain at least one non-reserved label")
        if self.catalog is None or not self.catalog:
            return
        if not resource.instance_type:
            preset = self.preset_or_none(self.ws.preset_name)
            if preset is not None and preset.requirements.gpu_count == 0:
                return  # a CPU model runs on a node the user brings; nothing to provision
            self.error("resource.instanceType", "instanceType is required when node auto-provisioning is "
                       "enabled")
        elif resource.instance_type not in self.catalog:
            self.error("resource.instanceType", f"Unsupported instance type {resource.instance_type}. "
                       f"Supported SKUs: {', '.join(sorted(self.catalog))}")

    def check_gpu_memory(self, preset: Preset) -> None:
        resource = self.ws.resource
        sku = self.known_skus.get(resource.instance_type or "")
        if sku is None:
            return  # unknown SKU: reported by check_resource when a catalog is configured
        bypass = _truthy(self.ws.annotations.get(BYPASS_RESOURCE_CHECKS))
        severity: Severity = "warning" if bypass else "error"
        required = preset.requirements
        total = resource.count * sku.total_gpu_memory
        if total < required.total_gpu_memory:
            self.error("resource.instanceType",
                       f"Insufficient total GPU memory: Instance type {sku.name} has a total of "
                       f"{format_bytes(total)}, but preset {preset.name} requires at least "
                       f"{format_bytes(required.total_gpu_memory)}", severity)
        if required.per_gpu_memory and sku.gpu_memory < required.per_gpu_memory:
            self.error("resource.instanceType",
                       f"Insufficient per GPU memory: Instance type {sku.name} has a per GPU memory of "
                       f"{format_bytes(sku.gpu_memory)}, but preset {preset.name} requires at least "
                       f"{format_bytes(required.per_gpu_memory)}", severity)

    # ----------------------------------------------------------------------------------- inference

    def check_inference(self, inference: InferenceSpec) -> None:
        if inference.preset is None and inference.template is None:
            self.error("inference", "Preset or Template must be specified")
        elif inference.preset is not None and inference.template is not None:
            self.error("inference", "Preset and Template cannot be set at the same time")
        if inference.preset is not None:
            preset = self.check_preset("inference.preset", inference.preset.name, "inference")
            if preset is not None:
                options = inference.preset.preset_options
                secret = options.model_access_secret if options is not None else None
                if preset.requires_auth and not secret:
                    self.error("inference.preset.presetOptions.modelAccessSecret",
                               "This preset requires authentication and needs a modelAccessSecret with "
                               "HF_TOKEN key")
                elif secret and not preset.requires_auth:
                    self.error("inference.preset.presetOptions.modelAccessSecret",
                               "This preset does not require a modelAccessSecret; it is ignored", "warning")
                self.check_gpu_memory(preset)
        if len(inference.adapters) > MAX_ADAPTERS:
            self.error("inference.adapters",
                       f"Number of Adapters exceeds the maximum limit, maximum of {MAX_ADAPTERS} allowed")
        seen: set[str] = set()
        for i, adapter in enumerate(inference.adapters):
            self.check_adapter(f"inference.adapters[{i}]", adapter, seen)

    def check_adapter(self, path: str, adapter: AdapterSpec, seen: set[str]) -> None:
        source = adapter.source
        if source is None:
            self.error(f"{path}.source", "required: an adapter needs a source with a name and an image")
        else:
            if not source.name:
                self.error(f"{path}.source.name", "required: every adapter needs a name")
            else:
                problem = dns1123_label_problem(source.name)
                if problem:
                    self.error(f"{path}.source.name", problem)
                if source.name in seen:
                    self.error(f"{path}.source.name", f"Duplicate adapter source name found: {source.name}")
                seen.add(source.name)
            if source.urls:
                self.error(f"{path}.source.urls", "URLs are not supported as adapter source")
            if not source.image and source.volume_source is None:
                self.error(f"{path}.source", "an adapter source needs an image (or a volumeSource)")
        if adapter.strength is not None:
            try:
                strength = float(adapter.strength)
            except ValueError:
                strength = math.nan
            if not 0.0 <= strength <= 1.0:  # also false for nan
                self.error(f"{path}.strength",
                           f"strength must be a number between 0 and 1, got {adapter.strength!r}")

    # ----------------------------------------------------------------------------------- tuning

    def check_tuning(self, tuning: TuningSpec) -> None:
        preset = None
        if tuning.preset is None:
            self.error("tuning.preset", "required: the preset to tune")
        else:
            preset = self.check_preset("tuning.preset", tuning.preset.name, "tuning")
        if tuning.method is None:
            self.error("tuning.method", f"required: one of {', '.join(TUNING_METHODS)}")
        elif tuning.method.lower() not in TUNING_METHODS:
            self.error("tuning.method",
                       f"Unsupported tuning method {tuning.method}; use one of {', '.join(TUNING_METHODS)}")
        if preset is not None:
            if preset.tuning is None:
                self.error("tuning.preset.name", f"preset {preset.name} does not support tuning")
            elif tuning.method and tuning.method.lower() in TUNING_METHODS \
                    and tuning.method.lower() not in preset.tuning.methods:
                self.error("tuning.method", f"preset {preset.name} does not support {tuning.method}; it "
                           f"supports: {', '.join(preset.tuning.methods)}")
            self.check_gpu_memory(preset)
        if self.ws.resource.count > 1:
            self.error("resource.count", "Tuning does not currently support multinode configurations. "
                       "Please set the node count to 1")
        if tuning.input is None:
            self.error("tuning.input", "required: exactly one of urls, image or volumeSource")
        else:
            self.check_input("tuning.input", tuning.input)
        if tuning.output is None:
            self.error("tuning.output", "required: an image (with imagePushSecret) or a volumeSource")
        else:
            self.check_output("tuning.output", tuning.output)

    def check_input(self, path: str, source: DataSource) -> None:
        given = [name for name, value in (("urls", source.urls), ("image", source.image),
                                          ("volumeSource", source.volume_source)) if value]
        if len(given) != 1:
            told = "none is set" if not given else f"got {', '.join(given)}"
            self.error(path, f"exactly one of urls, image or volumeSource must be specified ({told})")
        for i, url in enumerate(source.urls):
            problem = url_problem(url)
            if problem:
                self.error(f"{path}.urls[{i}]", problem)
        if source.image_pull_secrets and not source.image:
            self.error(f"{path}.imagePullSecrets", "imagePullSecrets only applies to an image input")

    def check_output(self, path: str, destination: DataDestination) -> None:
        if destination.image and destination.volume_source is not None:
            self.error(path, "exactly one of image or volumeSource must be specified (got both)")
        elif not destination.image and destination.volume_source is None:
            self.error(path, "exactly one of image or volumeSource must be specified (none is set)")
        if destination.image and not destination.image_push_secret:
            self.error(f"{path}.imagePushSecret", "an output image requires imagePushSecret (a Secret with "
                       "push credentials for the registry)")

    # ----------------------------------------------------------------------------------- presets

    def preset_or_none(self, name: str | None) -> Preset | None:
        if name is None or self.registry is None:
            return None
        return self.registry.presets().get(name)

    def check_preset(self, path: str, name: str, purpose: str) -> Preset | None:
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
        return preset

    # ----------------------------------------------------------------------------------- update

    def check_update(self, old: Workspace) -> None:
        new = self.ws
        for path, before, after in (
            ("resource.count", old.resource.count, new.resource.count),
            ("resource.instanceType", old.resource.instance_type, new.resource.instance_type),
            ("resource.labelSelector", old.resource.label_selector, new.resource.label_selector),
        ):
            if before != after:
                self.error(path, "field is immutable")
        for section in ("inference", "tuning"):
            before_spec = getattr(old, section)
            after_spec = getattr(new, section)
            if (before_spec is None) != (after_spec is None):
                self.error(section, f"{section.capitalize()} field cannot be toggled once set")
                continue
            if before_spec is None or after_spec is None:
                continue
            old_preset = before_spec.preset.name if before_spec.preset else None
            new_preset = after_spec.preset.name if after_spec.preset else None
            if old_preset != new_preset:
                self.error(f"{section}.preset", "field is immutable")
        if old.inference is not None and new.inference is not None \
                and (old.inference.template is None) != (new.inference.template is None):
            self.error("inference.template", "Template field cannot be toggled once set")
        if old.tuning is not None and new.tuning is not None and old.tuning.method != new.tuning.method:
            self.error("tuning.method", "field is immutable")


def dns1123_label_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 label (Kubernetes' wording), or None."""
    if not name:
        return "required: a lowercase RFC 1123 label such as 'phi-3-mini'"
    if len(name) > 63:
        return f"{name!r}: must be no more than 63 characters"
    if not _DNS1123_LABEL.match(name):
        return (f"{name!r}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or "
                "'123-abc')")
    return None


def format_bytes(size: int) -> str:
    """Bytes as Kubernetes quantities: ``16Gi``, ``9.5Gi``, ``512Mi``."""
    if size >= GiB:
        return f"{size / GiB:.4g}Gi"
    return f"{size / (1024 * 1024):.4g}Mi"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"true", "yes", "1", "on"}
