"""Conversion between kaito.sh/v1alpha1 and kaito.sh/v1beta1 loses nothing, in both directions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kaito_core.api import Workspace, convert, v1alpha1_to_v1beta1, v1beta1_to_v1alpha1
from kaito_core.api.conversion import V1ALPHA1_FIELDS, V1BETA1_FIELDS

COMMON: dict[str, Any] = {
    "kind": "Workspace",
    "metadata": {"name": "ws", "namespace": "ns", "annotations": {"kaito.sh/runtime": "vllm"}},
    "resource": {
        "count": 2,
        "instanceType": "Standard_NC12s_v3",
        "labelSelector": {
            "matchLabels": {"apps": "x"},
            "matchExpressions": [{"key": "k", "operator": "Exists"}],
        },
        "preferredNodes": ["n1"],
    },
    "inference": {
        "preset": {
            "name": "phi-3-mini-4k-instruct",
            "presetOptions": {"image": "i", "imagePullSecrets": ["s"], "modelAccessSecret": "hf"},
        },
        "config": "cfg",
        "adapters": [
            {"source": {"name": "a", "image": "r/a:1", "imagePullSecrets": ["p"]}, "strength": "0.3"}
        ],
    },
    "status": {"workerNodes": ["n1"], "conditions": [{"type": "InferenceReady", "status": "True"}]},
}


def alpha(**extra: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(COMMON) | {"apiVersion": "kaito.sh/v1alpha1"}
    manifest["inference"]["preset"]["accessMode"] = "private"  # in both versions, as in KAITO
    return manifest | extra


def beta() -> dict[str, Any]:
    manifest = copy.deepcopy(COMMON) | {"apiVersion": "kaito.sh/v1beta1"}
    manifest["status"] |= {"state": "Ready", "targetNodeCount": 2,
                           "performance": {"metrics": {"ttft": {"unit": "ms", "value": "12"}}}}
    return manifest


def test_v1alpha1_round_trip_through_v1beta1() -> None:
    original = alpha()
    converted = v1alpha1_to_v1beta1(original)
    assert converted["apiVersion"] == "kaito.sh/v1beta1"
    assert converted["inference"]["preset"]["accessMode"] == "private"  # both versions have it
    assert V1ALPHA1_FIELDS not in converted["metadata"].get("annotations", {})  # nothing v1alpha1-only
    # every field both versions have is there unchanged
    for section in ("resource", "status"):
        assert converted[section] == original[section]
    assert converted["inference"]["adapters"] == original["inference"]["adapters"]
    assert v1beta1_to_v1alpha1(converted) == original
    assert original == alpha()  # the input is not modified


def test_v1beta1_round_trip_through_v1alpha1() -> None:
    original = beta()
    converted = v1beta1_to_v1alpha1(original)
    assert converted["apiVersion"] == "kaito.sh/v1alpha1"
    assert converted["status"] == {
        "workerNodes": ["n1"],
        "conditions": [{"type": "InferenceReady", "status": "True"}],
    }
    assert json.loads(converted["metadata"]["annotations"][V1BETA1_FIELDS]) == {
        "status.state": "Ready",
        "status.targetNodeCount": 2,
        "status.performance": {"metrics": {"ttft": {"unit": "ms", "value": "12"}}},
    }
    assert converted["inference"] == original["inference"]
    assert v1alpha1_to_v1beta1(converted) == original


def test_round_trip_through_the_models() -> None:
    """What the operator does: read either version into the model, write either version out."""
    for original in (alpha(), beta()):
        version = original["apiVersion"].split("/")[1]
        ws = Workspace.model_validate(original)
        assert ws.api_version == "kaito.sh/v1beta1"
        assert ws.to_manifest(version) == original
        other = "v1alpha1" if version == "v1beta1" else "v1beta1"
        assert Workspace.model_validate(ws.to_manifest(other)).to_manifest(version) == original


def test_without_version_specific_fields_no_annotation_is_added() -> None:
    plain = copy.deepcopy(COMMON) | {"apiVersion": "kaito.sh/v1beta1"}
    converted = convert(plain, "v1alpha1")
    assert converted["metadata"]["annotations"] == {"kaito.sh/runtime": "vllm"}
    assert convert(converted, "kaito.sh/v1beta1") == plain
    assert convert(plain, "v1beta1") == plain and convert(plain, "v1beta1") is not plain


def test_stashed_fields_do_not_bring_back_removed_sections() -> None:
    converted = v1alpha1_to_v1beta1(alpha())
    del converted["inference"]  # a user switched to tuning in between
    converted["tuning"] = {"preset": {"name": "p"}}
    back = v1beta1_to_v1alpha1(converted)
    assert "inference" not in back and back["tuning"] == {"preset": {"name": "p"}}


@pytest.mark.parametrize(
    ("manifest", "to", "message"),
    [
        ({"apiVersion": "kaito.sh/v1beta1"}, "v2", "unknown Workspace version 'v2'"),
        ({"apiVersion": "apps/v1"}, "v1beta1", "unknown Workspace apiVersion 'apps/v1'"),
    ],
)
def test_convert_rejects_unknown_versions(manifest: dict[str, Any], to: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert(manifest, to)
    if to == "v2":
        with pytest.raises(ValueError, match=message):
            Workspace.model_validate(beta()).to_manifest(to)
