"""The Workspace models: both apiVersions, aliases, output manifests, and parse errors as FieldErrors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaito_core.api import (
    AdapterSpec,
    DataSource,
    FieldError,
    Workspace,
    WorkspaceError,
    WorkspaceStatus,
    load_workspace,
    load_workspaces,
    parse_documents,
    parse_workspace,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FULL_V1BETA1 = """
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: everything
  namespace: team-a
  labels: {team: a}
  annotations: {kaito.sh/runtime: vllm}
  uid: 1234
  resourceVersion: "7"
  generation: 2
  creationTimestamp: "2026-11-28T12:00:00Z"
  finalizers: [workspace.finalizer.kaito.sh]
resource:
  count: 2
  instanceType: Standard_NC12s_v3
  labelSelector:
    matchLabels: {apps: x}
    matchExpressions: [{key: zone, operator: In, values: [a, b]}]
  preferredNodes: [node-1]
inference:
  preset:
    name: phi-3-mini-4k-instruct
    presetOptions: {image: img, imagePullSecrets: [s1], modelAccessSecret: hf}
  config: my-config
  adapters:
    - source: {name: a1, image: reg/a1:1, imagePullSecrets: [s2]}
      strength: "0.5"
    - source: {name: a2, volumeSource: {persistentVolumeClaim: {claimName: pvc}}}
status:
  workerNodes: [node-1]
  conditions:
    - {type: ResourceReady, status: "True", reason: ok, message: fine,
       lastTransitionTime: "2026-11-28T12:00:00Z"}
  state: Ready
  targetNodeCount: 2
  kopf: {progress: {}}
"""


def test_every_field_is_read_and_written_back_unchanged() -> None:
    original = yaml.safe_load(FULL_V1BETA1)
    original["metadata"]["uid"] = "1234"  # YAML made it an int; the API has strings
    ws = Workspace.model_validate(original)
    assert ws.resource.count == 2
    assert ws.resource.label_selector.match_expressions[0].values == ["a", "b"]
    assert ws.inference is not None and ws.inference.preset is not None
    assert ws.inference.preset.preset_options is not None
    assert ws.inference.preset.preset_options.model_access_secret == "hf"
    assert ws.inference.adapters[1].source is not None
    assert ws.inference.adapters[1].source.volume_source == {"persistentVolumeClaim": {"claimName": "pvc"}}
    assert ws.status is not None and ws.status.state == "Ready" and ws.status.target_node_count == 2
    assert ws.status.condition("ResourceReady") is not None
    assert ws.to_manifest() == original  # unknown metadata and status fields (kopf's) are kept too


def test_snake_case_names_work_in_code() -> None:
    ws = Workspace(
        metadata={"name": "a"},
        resource={"instance_type": "Standard_NC6s_v3", "label_selector": {"match_labels": {"x": "y"}}},
        tuning={
            "preset": {"name": "p"},
            "method": "lora",
            "input": {"urls": ["https://e.org/d"]},
            "output": {"image": "r/i:1", "image_push_secret": "s"},
        },
    )
    manifest = ws.to_manifest()
    assert manifest["apiVersion"] == "kaito.sh/v1beta1" and manifest["kind"] == "Workspace"
    assert manifest["resource"] == {
        "instanceType": "Standard_NC6s_v3",
        "labelSelector": {"matchLabels": {"x": "y"}},
    }
    assert manifest["tuning"]["output"] == {"image": "r/i:1", "imagePushSecret": "s"}
    assert ws.preset_name == "p" and ws.namespace == "default"


def test_assignment_is_validated_and_written() -> None:
    ws = load_workspace((EXAMPLES / "workspace-phi-3-mini.yaml").read_text())
    ws.status = WorkspaceStatus()
    ws.status.target_node_count = 1
    assert ws.to_manifest()["status"] == {"targetNodeCount": 1}
    with pytest.raises(ValueError, match="target_node_count"):
        ws.status.target_node_count = "many"  # type: ignore[assignment]


def test_v1alpha1_manifest_becomes_the_v1beta1_model_with_defaults() -> None:
    ws = load_workspace("""
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata: {name: old}
resource: {labelSelector: {matchLabels: {a: b}}}
inference: {preset: {name: phi-3-mini-4k-instruct, accessMode: private}}
""")
    assert ws.api_version == "kaito.sh/v1beta1"
    assert ws.resource.instance_type == "Standard_NC24ads_A100_v4"  # v1alpha1's default, applied on read
    assert ws.to_manifest("v1alpha1")["inference"]["preset"]["accessMode"] == "private"


def test_examples_load_and_round_trip() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "no examples found"
    for path in files:
        originals = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Workspace"]
        workspaces = load_workspaces(path.read_text(), source=str(path))
        assert [
            ws.to_manifest(d["apiVersion"].split("/")[1]) for ws, d in zip(workspaces, originals, strict=True)
        ] == originals


def test_parse_errors_are_field_errors_with_paths() -> None:
    ws, errors = parse_workspace(
        {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {},
            "resource": {"count": "two", "instancetype": "x", "labelSelector": {"matchLabels": {"a": 1}}},
            "inference": {"adapters": [{"source": {"name": "a"}, "strength": 0.5}], "preset": {}},
        }
    )
    assert ws is None
    by_path = {e.path: e.message for e in errors}
    assert by_path["metadata.name"].startswith("required")
    assert "valid integer" in by_path["resource.count"] and "'two'" in by_path["resource.count"]
    assert by_path["resource.instancetype"] == "unknown field 'instancetype'; did you mean 'instanceType'?"
    assert "valid string" in by_path["resource.labelSelector.matchLabels.a"]
    assert by_path["inference.adapters[0].strength"].startswith(
        'strength must be a quoted string, e.g. "0.5"'
    )
    assert by_path["inference.preset.name"] == "required"
    assert all(isinstance(e, FieldError) and e.is_error for e in errors)


@pytest.mark.parametrize(
    ("manifest", "path", "fragment"),
    [
        (
            {"apiVersion": "kaito.sh/v2", "kind": "Workspace"},
            "apiVersion",
            "unknown apiVersion 'kaito.sh/v2'",
        ),
        ({"kind": "Workspace", "metadata": {"name": "a"}}, "apiVersion", "missing"),
        ("just a string", "", "must be a mapping"),
    ],
)
def test_unreadable_objects(manifest: object, path: str, fragment: str) -> None:
    ws, errors = parse_workspace(manifest)
    assert ws is None
    assert [e.path for e in errors] == [path]
    assert fragment in errors[0].message


def test_documents_of_other_kinds_are_skipped_and_bad_ones_reported() -> None:
    text = """
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
---
---
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: good}
resource: {labelSelector: {matchLabels: {a: b}}}
inference: {preset: {name: p}}
---
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata: {name: bad}
inference: {preset: {name: p}}
"""
    documents = parse_documents(text)
    assert [(d.name, d.ok) for d in documents] == [("good", True), ("bad", False)]
    assert [(e.path, e.message) for e in documents[1].errors] == [("resource", "required")]
    with pytest.raises(WorkspaceError) as caught:
        load_workspaces(text, source="f.yaml")
    assert str(caught.value) == "f.yaml: Workspace/bad: resource: required"


def test_invalid_yaml_is_an_error_not_a_traceback() -> None:
    documents = parse_documents("apiVersion: [unclosed\n")
    assert len(documents) == 1 and documents[0].errors[0].message.startswith("invalid YAML at line ")
    assert "<unicode string>" not in documents[0].errors[0].message  # the caller names the file
    with pytest.raises(WorkspaceError, match="expected one Workspace, found 0"):
        load_workspace("apiVersion: v1\nkind: ConfigMap\n")


def test_lists_from_kubectl_are_expanded_and_other_kaito_kinds_skipped() -> None:
    text = """
apiVersion: v1
kind: List
items:
  - apiVersion: kaito.sh/v1beta1
    kind: Workspace
    metadata: {name: one}
    resource: {labelSelector: {matchLabels: {a: b}}}
    inference: {preset: {name: p}}
  - apiVersion: kaito.sh/v1alpha1
    kind: RAGEngine
    metadata: {name: rag}
---
apiVersion: kaito.sh/v1beta1
metadata: {name: kindless}
"""
    documents = parse_documents(text)
    assert [(d.name, d.ok) for d in documents] == [("one", True), ("kindless", False)]
    assert [(e.path, e.message) for e in documents[1].errors] == [("kind", "required: Workspace")]


def test_changes_made_in_place_reach_the_manifest() -> None:
    ws = load_workspace((EXAMPLES / "workspace-phi-3-mini.yaml").read_text())
    assert ws.inference is not None
    ws.inference.adapters.append(AdapterSpec(source=DataSource(name="a", image="r/a:1"), strength="0.5"))
    ws.metadata.annotations["kaito.sh/runtime"] = "vllm"
    manifest = ws.to_manifest()
    assert manifest["inference"]["adapters"] == [
        {"source": {"name": "a", "image": "r/a:1"}, "strength": "0.5"}
    ]
    assert manifest["metadata"]["annotations"] == {"kaito.sh/runtime": "vllm"}
    assert "count" not in manifest["resource"]  # an unset default stays out
    explicit = load_workspace(
        "apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: {name: a}\n"
        "resource: {count: 1, labelSelector: {matchLabels: {a: b}}}\ninference: {preset: {name: p}}\n"
    )
    assert explicit.to_manifest()["resource"]["count"] == 1  # a default the user wrote is kept
