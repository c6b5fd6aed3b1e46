"""The names the Workspace API is known by: its group, versions and kind, and the annotations kaito
reads. A module of its own, so that conversion, loading and the models agree without importing each
other (and without pydantic)."""

from __future__ import annotations

from typing import Final

GROUP: Final = "kaito.sh"
V1ALPHA1: Final = "kaito.sh/v1alpha1"
V1BETA1: Final = "kaito.sh/v1beta1"
API_VERSIONS = (V1ALPHA1, V1BETA1)
KIND: Final = "Workspace"

#: Annotation that lets validation report "not enough GPU memory" as a warning instead of an error.
BYPASS_RESOURCE_CHECKS: Final = "kaito.sh/bypass-resource-checks"
#: Annotation that chooses the inference runtime (``vllm`` by default).
RUNTIME_ANNOTATION: Final = "kaito.sh/runtime"
#: Annotation naming a registry or OCI layout reference of the weights (docs/local.md, docs/artifacts.md).
ARTIFACT_ANNOTATION: Final = "kaito.sh/model-artifact"
#: Label keys KAITO sets on its own NodeClaims and nodes; a labelSelector's values for them are ignored
#: (they would let one Workspace target another's nodes).
RESERVED_SELECTOR_LABELS: Final = frozenset(
    {
        "kaito.sh/workspace",
        "kaito.sh/workspacenamespace",
        "kaito.sh/ragengine",
        "kaito.sh/ragenginenamespace",
        "karpenter.kaito.sh/workspace-name",
        "karpenter.kaito.sh/workspace-namespace",
        "karpenter.kaito.sh/inferenceset",
        "karpenter.kaito.sh/inferenceset-namespace",
    }
)

#: Annotation pinning a Hugging Face model named by repository id to a commit: the user may set it; the
#: operator writes the commit ``main`` resolved to when it is absent (and reports it in the status).
MODEL_REVISION_ANNOTATION: Final = "kaito.sh/model-revision"


def is_repo_id(name: str) -> bool:
    """``org/model``, as the Hub spells repository ids: what KAITO (since v0.9) accepts as
    ``inference.preset.name`` for any Hugging Face model."""
    import re

    parts = name.split("/")
    return len(parts) == 2 and all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", p) for p in parts)


#: A reference to an OCI image layout on this machine (``oci:PATH[:TAG]``), as oras and skopeo write it.
LAYOUT_PREFIX: Final = "oci:"
