"""The CRD: generated from the models, checked in, structural, and every example validates against it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kaito_core.api.crd import CRD_PATH, PRESERVE, crd_manifest, crd_yaml, schema_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_checked_in_crd_matches_the_models() -> None:
    checked_in = (ROOT / CRD_PATH).read_text()
    assert checked_in == crd_yaml(), f"{CRD_PATH} is stale; regenerate it with: kaito crd > {CRD_PATH}"


def test_crd_is_a_valid_kubernetes_object() -> None:
    (crd,) = [d for d in yaml.safe_load_all((ROOT / CRD_PATH).read_text()) if d]
    kubernetes_validate.validate(crd, "1.30", strict=True)


def test_versions_names_columns_and_subresources() -> None:
    spec = crd_manifest()["spec"]
    assert spec["group"] == "kaito.sh" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["wk", "wks"]
    versions = {v["name"]: v for v in spec["versions"]}
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        ("v1alpha1", True, False),
        ("v1beta1", True, True),
    ]
    for name, version in versions.items():
        assert version["subresources"] == {"status": {}}
        columns = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
        expected = ["Instance", "ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded"]
        expected += ["TargetNodeCount", "State"] if name == "v1beta1" else []  # by default, as KAITO
        assert columns == [*expected, "Age"]
        paths = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
        assert paths["Instance"] == ".resource.instanceType"
        assert paths["ResourceReady"] == '.status.conditions[?(@.type=="ResourceReady")].status'
        schema = version["schema"]["openAPIV3Schema"]
        assert schema["properties"]["status"][PRESERVE] is True
        template = schema["properties"]["inference"]["properties"]["template"]
        assert template == {"description": template["description"], "type": "object", PRESERVE: True}
    beta_status = versions["v1beta1"]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    alpha_status = versions["v1alpha1"]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"state", "targetNodeCount"} <= set(beta_status) and not {"state", "targetNodeCount"} & set(
        alpha_status
    )


# ------------------------------------------------------------------------------ structural schema


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """The rules of https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
    custom-resource-definitions/#specifying-a-structural-schema that apply to what we generate."""
    problems = []
    if schema.get("type") != "object":
        problems.append("the root must be an object")
    for path, node in walk(schema):
        where = path or "<root>"
        if "$ref" in node or "$defs" in node or "definitions" in node:
            problems.append(f"{where}: $ref/definitions are not allowed")
        for keyword in ("anyOf", "oneOf", "allOf", "not"):
            for sub in node.get(keyword, []) if keyword != "not" else [node.get("not", {})]:
                forbidden = {"type", "description", "default", "additionalProperties", "nullable"} & set(sub)
                if forbidden:
                    problems.append(f"{where}: {keyword} may not carry {sorted(forbidden)}")
        if "type" not in node and not node.get(PRESERVE) and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{where}: every node needs a type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
        if node.get("additionalProperties") is False:
            problems.append(f"{where}: additionalProperties: false is not allowed")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{where}: an array needs items")
        if "default" in node:
            sub = copy.deepcopy(node)
            sub.pop("default")
            if not jsonschema.Draft7Validator(sub).is_valid(node["default"]):
                problems.append(f"{where}: the default does not match the schema")
    metadata = schema.get("properties", {}).get("metadata", {})
    if set(metadata) - {"type"} and set(metadata.get("properties", {})) - {"name", "generateName"}:
        problems.append(".metadata: only name and generateName may be specified")
    return problems


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_schema_is_structural(version: str) -> None:
    assert structural_problems(schema_for(version)) == []


def test_structural_check_catches_violations() -> None:
    """The check above is not vacuous: a pydantic-style schema fails it."""
    bad = {
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "b": {"$ref": "#/$defs/B"},
            "c": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False},
            "d": {"type": "integer", "default": "one"},
            "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
        },
    }
    problems = structural_problems(bad)
    assert any(p.startswith(".a: anyOf") for p in problems)
    assert any(p.startswith(".b: $ref") for p in problems)
    assert ".c: properties and additionalProperties are mutually exclusive" in problems
    assert ".d: the default does not match the schema" in problems
    assert ".metadata: only name and generateName may be specified" in problems


# ------------------------------------------------------------------------------ examples vs the CRD


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields forbidden where the API server would prune them silently."""
    schema = copy.deepcopy(schema)
    for _, node in walk(schema):
        if "properties" in node and not node.get(PRESERVE):
            node["additionalProperties"] = False
    return schema


def crd_errors(document: dict[str, Any]) -> list[str]:
    version = str(document.get("apiVersion", "")).rsplit("/", 1)[-1]
    validator = jsonschema.Draft7Validator(strict(schema_for(version)))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_against_the_crd_schema(path: Path) -> None:
    workspaces = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Workspace"]
    assert workspaces, f"{path.name} holds no Workspace"
    for document in workspaces:
        assert crd_errors(document) == [], f"{path.name}: {document['metadata']['name']}"


def test_the_crd_schema_rejects_wrong_documents() -> None:
    document = yaml.safe_load((ROOT / "examples" / "workspace-phi-3-mini.yaml").read_text())
    document["resource"]["count"] = "two"
    document["inference"]["preset"]["nmae"] = "typo"
    document["status"] = {"state": "Ready", "kopf": {"progress": {}}}  # unknown status fields are kept
    errors = crd_errors(document)
    assert len(errors) == 2
    assert any(e.startswith("resource.count:") for e in errors)
    assert any("'nmae' was unexpected" in e for e in errors)
    document = yaml.safe_load((ROOT / "examples" / "workspace-phi-3-mini.yaml").read_text())
    document["inference"]["preset"]["accessMode"] = "public"  # in both versions, as in KAITO
    assert crd_errors(document) == []
    document["status"] = {"performance": {"metrics": {}}}  # a v1beta1-only status field
    assert crd_errors(document) == []
    document["apiVersion"] = "kaito.sh/v1alpha1"
    document["resource"]["count"] = 0
    assert any(e.startswith("resource.count:") for e in crd_errors(document))
