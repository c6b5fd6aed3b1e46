"""Pydantic models of the ``Workspace`` custom resource, ``kaito.sh/v1beta1`` (the internal form).

Fields sit at the top level of the object (``resource``, ``inference``, ``tuning``), as KAITO has them.
Attributes are snake_case with the camelCase Kubernetes names as aliases; both are accepted on input.
A ``kaito.sh/v1alpha1`` manifest given to :class:`Workspace` is converted first
(:mod:`kaito_core.api.conversion`), so code inside the project only ever sees this one model.

These classes are also the single source of the CRD schema (:mod:`kaito_core.api.crd`): descriptions
written here are what ``kubectl explain workspace`` shows.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from kaito_core.api.names import GROUP, KIND, V1ALPHA1, V1BETA1

#: Marks a field whose content is schemaless in the CRD (a PodTemplateSpec, a VolumeSource).
SCHEMALESS: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


class _Spec(BaseModel):
    """Spec parts: unknown fields are errors, so a typo (``instancetype``) is reported, not dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", validate_assignment=True
    )


class _Open(BaseModel):
    """Parts the API server or other controllers also write to: unknown fields are kept."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", validate_assignment=True
    )


# ------------------------------------------------------------------------------------------ metadata


class ObjectMeta(_Open):
    """The Kubernetes object metadata the project reads; everything else is kept as it came."""

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None


# ------------------------------------------------------------------------------------------ resource


ATOMIC_LIST: dict[str, Any] = {"x-kubernetes-list-type": "atomic"}


class LabelSelectorRequirement(_Spec):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list, json_schema_extra=ATOMIC_LIST)


class LabelSelector(_Spec):
    """A Kubernetes label selector; the provisioner puts ``matchLabels`` on every node it creates."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-map-type": "atomic"})

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, json_schema_extra=ATOMIC_LIST)


class PartitionSpec(_Spec):
    """GPU partitioning (KAITO's MIG and accelerator partitions). Admission refuses it here: the planner has
    no plan for GPU partitions yet (docs/api.md)."""

    mode: Literal["mig", "accelerator"] = Field(
        description='"mig" (NVIDIA Multi-Instance GPU) or "accelerator" (several whole GPUs).')
    profile: str | None = Field(None, description='The MIG profile, e.g. "1g.10gb" (mig mode only).')
    count: int | None = Field(None, ge=1, description="Whole GPUs to allocate (accelerator mode only).")


class ResourceSpec(_Spec):
    """The GPU nodes the workload needs. Missing nodes are provisioned before the workload is deployed."""

    count: int = Field(1, ge=1, description="Number of GPU nodes (default 1).")
    instance_type: str | None = Field(
        None,
        description="The GPU node SKU, e.g. Standard_NC6s_v3. Required when nodes are auto-provisioned.",
    )
    label_selector: LabelSelector = Field(description="Labels the GPU nodes must carry.")
    preferred_nodes: list[str] = Field(
        default_factory=list,
        description="Existing nodes to prefer; a node without the required labels is ignored.",
    )
    partition: PartitionSpec | None = Field(
        None, description="GPU partitioning (MIG or accelerator); refused at admission (not planned yet).")


# ------------------------------------------------------------------------------------------ inference


class PresetOptions(_Spec):
    image: str | None = Field(None, description="Container image of the model (deprecated).")
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets in the Workspace namespace for pulling the image."
    )
    model_access_secret: str | None = Field(
        None, description="Secret with an HF_TOKEN key, for models that need authentication."
    )


class PresetSpec(_Spec):
    """A model the installed preset plugins know, by name (``kaito presets`` lists them)."""

    name: str = Field(description="Name of an installed preset, e.g. phi-3-mini-4k-instruct.")
    access_mode: Literal["public", "private"] | None = Field(
        None,
        description="Deprecated: whether the model image is in a public or private registry (default public; "
                    "private needs presetOptions.image).",
        json_schema_extra={"default": "public"},
    )
    preset_options: PresetOptions | None = None


class DataSource(_Spec):
    """Where data comes from: exactly one of ``urls``, ``image`` or ``volumeSource``."""

    name: str | None = Field(None, description="Name of the data set or adapter (a DNS-1123 label).")
    urls: list[str] = Field(default_factory=list, description="http(s) links to public data files.")
    image: str | None = Field(None, description="Image holding the data under /data.")
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Secrets in the Workspace namespace for pulling the image."
    )
    volume_source: dict[str, Any] | None = Field(
        None, description="A Kubernetes VolumeSource holding the data.", json_schema_extra=SCHEMALESS
    )


class DataDestination(_Spec):
    """Where tuning results go: an image (with ``imagePushSecret``) or a volume."""

    image: str | None = Field(None, description="Image to push the adapter to.")
    image_push_secret: str | None = Field(
        None, description="Secret in the Workspace namespace with push credentials for the image."
    )
    volume_source: dict[str, Any] | None = Field(
        None, description="A Kubernetes VolumeSource to write the adapter to.", json_schema_extra=SCHEMALESS
    )


class AdapterSpec(_Spec):
    source: DataSource | None = Field(None, description="Where the adapter comes from.")
    strength: str | None = Field(
        None,
        description='Multiplier for the adapter weights, a number in [0, 1] written as a string ("0.5").',
    )


class InferenceSpec(_Spec):
    """Serve a model: a ``preset`` (or a custom Pod ``template``), optional ``config`` and ``adapters``."""

    preset: PresetSpec | None = Field(None, description="The base model to serve.")
    template: dict[str, Any] | None = Field(
        None,
        description="A PodTemplateSpec to run instead of a preset.",
        json_schema_extra=SCHEMALESS,
    )
    config: str | None = Field(
        None, description="Name of a ConfigMap in the Workspace namespace with inference_config.yaml."
    )
    adapters: list[AdapterSpec] = Field(default_factory=list, description="LoRA adapters to load.")


# ------------------------------------------------------------------------------------------ tuning


class TuningSpec(_Spec):
    """Fine-tune a preset with LoRA or QLoRA."""

    # required in the CRD as in KAITO's; optional in the model so that validation names what is missing
    model_config = ConfigDict(json_schema_extra={"required": ["input", "output"]})

    preset: PresetSpec | None = Field(None, description="The base model to tune.")
    method: str | None = Field(None, description="lora or qlora.")
    config: str | None = Field(
        None, description="Name of a ConfigMap in the Workspace namespace with training_config.yaml."
    )
    input: DataSource | None = Field(None, description="The training data.")
    output: DataDestination | None = Field(None, description="Where the trained adapter goes.")


# ------------------------------------------------------------------------------------------ status


class Condition(_Open):
    """A metav1.Condition."""

    type: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                              r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
    status: Literal["True", "False", "Unknown"]
    reason: str | None = Field(None, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str | None = None
    last_transition_time: str | None = Field(None, json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(None, ge=0, json_schema_extra={"format": "int64"})


class WorkspaceStatusBase(_Open):
    worker_nodes: list[str] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)

    def condition(self, type_: str) -> Condition | None:
        for condition in self.conditions:
            if condition.type == type_:
                return condition
        return None


class Performance(_Open):
    """Inference benchmark results, as KAITO reports them (metrics by name; written by the operator)."""

    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)


WorkspaceState = Literal["Pending", "Ready", "NotReady", "Running", "Succeeded", "Failed"]


class WorkspaceStatus(WorkspaceStatusBase):
    """Observed state; v1beta1 adds ``state`` and ``targetNodeCount``."""

    state: WorkspaceState | None = None
    target_node_count: int | None = Field(None, json_schema_extra={"format": "int32"})
    performance: Performance | None = None


# ------------------------------------------------------------------------------------------ workspace


class Workspace(_Spec):
    """A ``kaito.sh/v1beta1`` Workspace (a ``kaito.sh/v1alpha1`` manifest is converted on input)."""

    api_version: Literal["kaito.sh/v1beta1"] = V1BETA1
    kind: Literal["Workspace"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    resource: ResourceSpec
    inference: InferenceSpec | None = None
    tuning: TuningSpec | None = None
    status: WorkspaceStatus | None = None

    version: ClassVar[str] = "v1beta1"

    @model_validator(mode="before")
    @classmethod
    def _convert_older_versions(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("apiVersion", data.get("api_version")) == V1ALPHA1:
            from kaito_core.api.conversion import v1alpha1_to_v1beta1

            return v1alpha1_to_v1beta1(data)
        return data

    # --------------------------------------------------------------------------- convenience

    @property
    def name(self) -> str:
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def preset_name(self) -> str | None:
        """The preset this Workspace runs or tunes, if any."""
        if self.inference is not None and self.inference.preset is not None:
            return self.inference.preset.name
        if self.tuning is not None and self.tuning.preset is not None:
            return self.tuning.preset.name
        return None

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.annotations

    # --------------------------------------------------------------------------- output

    def to_manifest(self, version: str = "v1beta1") -> dict[str, Any]:
        """The object as Kubernetes JSON (camelCase, without unset defaults), in ``version``.

        ``version`` is ``v1beta1`` or ``v1alpha1`` (a full ``kaito.sh/...`` apiVersion works too).
        """
        manifest = manifest_of(self)
        manifest["apiVersion"] = V1BETA1
        manifest["kind"] = KIND
        manifest.setdefault("metadata", {})
        # keep apiVersion and kind first, as people write them
        manifest = {
            "apiVersion": manifest.pop("apiVersion"),
            "kind": manifest.pop("kind"),
            **manifest,
        }
        target = version if "/" in version else f"{GROUP}/{version}"
        if target == V1BETA1:
            return manifest
        if target == V1ALPHA1:
            from kaito_core.api.conversion import v1beta1_to_v1alpha1

            return v1beta1_to_v1alpha1(manifest)
        raise ValueError(f"unknown Workspace version {version!r}; use one of: v1alpha1, v1beta1")


def manifest_of(model: BaseModel) -> dict[str, Any]:
    """``model`` as a camelCase dict with the fields that were given or differ from their default.

    Unlike ``model_dump(exclude_unset=True)`` this keeps changes made in place after parsing (an adapter
    appended to a list that was not in the manifest); unlike ``exclude_defaults`` it keeps a default the
    user wrote (``count: 1``), so manifests round-trip unchanged. ``None`` means absent.
    """
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if name not in model.model_fields_set and value == info.get_default(call_default_factory=True):
            continue
        out[info.alias or name] = _plain(value)
    for key, value in (model.__pydantic_extra__ or {}).items():
        out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return manifest_of(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
