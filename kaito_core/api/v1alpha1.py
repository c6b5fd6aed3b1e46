"""The ``kaito.sh/v1alpha1`` shape of the Workspace: used to check v1alpha1 input and to generate its schema.

It differs from v1beta1 (:mod:`kaito_core.api.models`) only where KAITO's versions differ:

* ``status.performance`` exists only in v1beta1 (``preset.accessMode`` is in both, as in KAITO);
* ``resource.instanceType`` defaults to ``Standard_NC24ads_A100_v4`` here;
* ``status.state`` and ``status.targetNodeCount`` exist only in v1beta1.

Conversion (:mod:`kaito_core.api.conversion`) keeps what the other version lacks in an annotation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from kaito_core.api.models import (
    KIND,
    V1ALPHA1,
    DataDestination,
    DataSource,
    InferenceSpec,
    ObjectMeta,
    PresetSpec,
    ResourceSpec,
    TuningSpec,
    WorkspaceStatusBase,
    _Spec,
    manifest_of,
)

#: KAITO v1alpha1's default node SKU, applied when a v1alpha1 manifest names none.
DEFAULT_INSTANCE_TYPE = "Standard_NC24ads_A100_v4"


class PresetSpecV1Alpha1(PresetSpec):
    """A model the installed preset plugins know, by name (``kaito presets`` lists them)."""


class ResourceSpecV1Alpha1(ResourceSpec):
    """The GPU nodes the workload needs. Missing nodes are provisioned before the workload is deployed."""

    instance_type: str | None = Field(
        DEFAULT_INSTANCE_TYPE,
        description=f"The GPU node SKU (default {DEFAULT_INSTANCE_TYPE}).",
    )


class InferenceSpecV1Alpha1(InferenceSpec):
    """Serve a model: a ``preset`` (or a custom Pod ``template``), optional ``config`` and ``adapters``."""

    preset: PresetSpecV1Alpha1 | None = Field(None, description="The base model to serve.")


class TuningSpecV1Alpha1(TuningSpec):
    """Fine-tune a preset with LoRA or QLoRA."""

    preset: PresetSpecV1Alpha1 | None = Field(None, description="The base model to tune.")
    input: DataSource | None = Field(None, description="The training data.")
    output: DataDestination | None = Field(None, description="Where the trained adapter goes.")


class WorkspaceStatusV1Alpha1(WorkspaceStatusBase):
    """Observed state (v1alpha1 has no ``state``/``targetNodeCount``)."""


class WorkspaceV1Alpha1(_Spec):
    """A ``kaito.sh/v1alpha1`` Workspace, as a user writes it."""

    api_version: Literal["kaito.sh/v1alpha1"] = V1ALPHA1
    kind: Literal["Workspace"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    resource: ResourceSpecV1Alpha1
    inference: InferenceSpecV1Alpha1 | None = None
    tuning: TuningSpecV1Alpha1 | None = None
    status: WorkspaceStatusV1Alpha1 | None = None

    version: ClassVar[str] = "v1alpha1"

    def to_manifest(self) -> dict[str, Any]:
        """The manifest with API-server defaulting applied (instanceType)."""
        manifest = manifest_of(self)
        manifest["apiVersion"] = V1ALPHA1
        manifest["kind"] = KIND
        resource = manifest.setdefault("resource", {})
        resource.setdefault("instanceType", self.resource.instance_type)
        return manifest
