"""The Workspace API: pydantic models of the CRD (v1alpha1, v1beta1), conversion, loading, validation."""

from kaito_core.api.conversion import convert, v1alpha1_to_v1beta1, v1beta1_to_v1alpha1
from kaito_core.api.errors import FieldError, WorkspaceError, errors_only, warnings_only
from kaito_core.api.loading import Document, load_workspace, load_workspaces, parse_documents, parse_workspace
from kaito_core.api.models import (
    AdapterSpec,
    Condition,
    DataDestination,
    DataSource,
    InferenceSpec,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
    PresetOptions,
    PresetSpec,
    ResourceSpec,
    TuningSpec,
    Workspace,
    WorkspaceStatus,
)
from kaito_core.api.names import (
    ARTIFACT_ANNOTATION,
    BYPASS_RESOURCE_CHECKS,
    RUNTIME_ANNOTATION,
    V1ALPHA1,
    V1BETA1,
)
from kaito_core.api.validation import validate_workspace

__all__ = [
    "ARTIFACT_ANNOTATION",
    "BYPASS_RESOURCE_CHECKS",
    "RUNTIME_ANNOTATION",
    "V1ALPHA1",
    "V1BETA1",
    "AdapterSpec",
    "Condition",
    "DataDestination",
    "DataSource",
    "Document",
    "FieldError",
    "InferenceSpec",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ObjectMeta",
    "PresetOptions",
    "PresetSpec",
    "ResourceSpec",
    "TuningSpec",
    "Workspace",
    "WorkspaceError",
    "WorkspaceStatus",
    "convert",
    "errors_only",
    "load_workspace",
    "load_workspaces",
    "parse_documents",
    "parse_workspace",
    "v1alpha1_to_v1beta1",
    "v1beta1_to_v1alpha1",
    "validate_workspace",
    "warnings_only",
]
