"""Lossless conversion of Workspace manifests between ``kaito.sh/v1alpha1`` and ``kaito.sh/v1beta1``.

Fields both versions have are copied as they are. A field only the source version has is kept, as JSON,
in an annotation on the converted object (``kaito.sh/v1alpha1-fields`` or ``kaito.sh/v1beta1-fields``),
and put back when the object is converted back, so a round trip in either direction returns the
original manifest. This is the same trick Kubernetes conversion webhooks use.

Functions work on plain manifest dicts (camelCase) and never modify their argument.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kaito_core.api.names import V1ALPHA1, V1BETA1

#: Annotation holding v1alpha1-only fields while the object is v1beta1.
V1ALPHA1_FIELDS = "kaito.sh/v1alpha1-fields"
#: Annotation holding v1beta1-only fields while the object is v1alpha1.
V1BETA1_FIELDS = "kaito.sh/v1beta1-fields"

#: Dotted paths of fields one version has and the other lacks.
ONLY_IN_V1ALPHA1: tuple[str, ...] = ()  # accessMode is in both versions, as in KAITO's CRD
ONLY_IN_V1BETA1 = ("status.state", "status.targetNodeCount", "status.performance")


def v1alpha1_to_v1beta1(manifest: dict[str, Any]) -> dict[str, Any]:
    """A v1alpha1 Workspace manifest as v1beta1."""
    return _convert(manifest, V1BETA1, drop=ONLY_IN_V1ALPHA1, stash_in=V1ALPHA1_FIELDS,
                    restore_from=V1BETA1_FIELDS)


def v1beta1_to_v1alpha1(manifest: dict[str, Any]) -> dict[str, Any]:
    """A v1beta1 Workspace manifest as v1alpha1."""
    return _convert(manifest, V1ALPHA1, drop=ONLY_IN_V1BETA1, stash_in=V1BETA1_FIELDS,
                    restore_from=V1ALPHA1_FIELDS)


def convert(manifest: dict[str, Any], to: str) -> dict[str, Any]:
    """Convert ``manifest`` (either version) to ``to`` (``v1alpha1``/``v1beta1`` or a full apiVersion)."""
    target = to if "/" in to else f"kaito.sh/{to}"
    source = manifest.get("apiVersion")
    if target not in (V1ALPHA1, V1BETA1):
        raise ValueError(f"unknown Workspace version {to!r}; use one of: v1alpha1, v1beta1")
    if source not in (V1ALPHA1, V1BETA1):
        raise ValueError(f"unknown Workspace apiVersion {source!r}; use one of: {V1ALPHA1}, {V1BETA1}")
    if source == target:
        return copy.deepcopy(manifest)
    return v1alpha1_to_v1beta1(manifest) if target == V1BETA1 else v1beta1_to_v1alpha1(manifest)


def _convert(
    manifest: dict[str, Any], target: str, *, drop: tuple[str, ...], stash_in: str, restore_from: str
) -> dict[str, Any]:
    result = copy.deepcopy(manifest)
    result["apiVersion"] = target
    metadata = result.get("metadata")
    if not isinstance(metadata, dict):
        metadata = {}
        result["metadata"] = metadata
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}

    stash: dict[str, Any] = {}
    for path in drop:
        found, value = _pop(result, path)
        if found:
            stash[path] = value

    restored = annotations.pop(restore_from, None)
    if isinstance(restored, str):
        try:
            fields = json.loads(restored)
        except json.JSONDecodeError:
            fields = {}
        if isinstance(fields, dict):
            for path, value in fields.items():
                _set_if_absent(result, path, value)

    if stash:
        annotations[stash_in] = json.dumps(stash, sort_keys=True, separators=(",", ":"))
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return result


def _pop(obj: dict[str, Any], path: str) -> tuple[bool, Any]:
    *parents, leaf = path.split(".")
    node: Any = obj
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and leaf in node:
        return True, node.pop(leaf)
    return False, None


def _set_if_absent(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node: Any = obj
    for part in parents:
        # only into parents that exist: a stashed field never brings back a section the user removed
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.setdefault(leaf, value)
