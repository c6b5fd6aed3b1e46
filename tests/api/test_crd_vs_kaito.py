"""Our generated CRD against KAITO v0.12's (vendored in tests/api/data): every difference is one that
docs/api.md ("The CRD against KAITO's") lists as intended, and no other.

The diff compares, per served version: the field tree and each field's type, the structural keywords
(required, enum, default, minimum, format, pattern, list/map markers), the printer columns (name,
path, priority), the names and the conversion strategy. Descriptions are not compared. Inside fields
that are schemaless here (a PodTemplateSpec, VolumeSources, a metric's value) nothing is compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kaito_core.api.crd import crd_manifest

ROOT = Path(__file__).resolve().parents[2]
KAITO_CRD = Path(__file__).parent / "data" / "kaito-v0.12.0-workspaces-crd.yaml"
KEYWORDS = ("required", "enum", "default", "minimum", "maximum", "format", "pattern",
            "x-kubernetes-list-type", "x-kubernetes-map-type")

#: (version, what, path) -> the docs/api.md row that says why it differs.
INTENDED: dict[tuple[str, str, str], str] = {
    **{(v, "type", p): "schemaless pod template and volumes" for v in ("v1alpha1", "v1beta1") for p in (
        "inference.template", "inference.adapters[].source.volumeSource", "tuning.input.volumeSource",
        "tuning.output.volumeSource")},
    **{(v, "only ours", f"{s}.preset.presetOptions.modelAccessSecret"): "modelAccessSecret in v1alpha1"
       for v in ("v1alpha1",) for s in ("inference", "tuning")},
    **{("v1alpha1", "only ours", f"resource.partition{p}"): "partition in v1alpha1"
       for p in ("", ".count", ".mode", ".profile")},
    **{(v, "required", ""): "resource required" for v in ("v1alpha1", "v1beta1")},
    **{(v, "minimum", "resource.count"): "count at least 1" for v in ("v1alpha1", "v1beta1")},
    **{(v, "enum", "resource.labelSelector.matchExpressions[].operator"): "selector operators enumerated"
       for v in ("v1alpha1", "v1beta1")},
    **{(v, "required", "status.conditions[]"): "condition fields the API server requires"
       for v in ("v1alpha1", "v1beta1")},
    ("v1beta1", "enum", "status.state"): "state enumerated",
}


def _resolved(node: dict[str, Any]) -> dict[str, Any]:
    """allOf of identical enums (controller-gen's output for a typed string) as one enum."""
    if "allOf" in node and "enum" not in node:
        enums = [part["enum"] for part in node["allOf"] if "enum" in part]
        if enums:
            return {**node, "enum": enums[0]}
    return node


def _walk(node: dict[str, Any], path: str, out: dict[str, dict[str, Any]]) -> None:
    node = _resolved(node)
    facts: dict[str, Any] = {"type": node.get("type", "schemaless" if node.get(
        "x-kubernetes-preserve-unknown-fields") else "")}
    facts.update({k: node[k] for k in KEYWORDS if k in node})
    out[path] = facts
    if facts["type"] == "schemaless" or path == "metadata":
        return
    for name, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.{name}" if path else name, out)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", out)
    if isinstance(node.get("additionalProperties"), dict) and path.endswith("metrics"):
        out[path]["type"] = "object of metrics"


def _version_facts(crd: dict[str, Any], version: str) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    [entry] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    fields: dict[str, dict[str, Any]] = {}
    _walk(entry["schema"]["openAPIV3Schema"], "", fields)
    columns = [(c["name"], c["jsonPath"], c.get("priority", 0))
               for c in entry.get("additionalPrinterColumns", [])]
    return fields, columns


def crd_differences(ours: dict[str, Any], kaito: dict[str, Any]) -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    for version in ("v1alpha1", "v1beta1"):
        our_fields, our_columns = _version_facts(ours, version)
        kaito_fields, kaito_columns = _version_facts(kaito, version)
        schemaless = [p for p, f in our_fields.items() if f["type"] == "schemaless"]

        def inside_schemaless(path: str, prefixes: list[str] = schemaless) -> bool:
            return any(path.startswith(f"{p}.") or path.startswith(f"{p}[]") for p in prefixes)

        for path in set(kaito_fields) - set(our_fields):
            if not inside_schemaless(path):
                found.add((version, "only KAITO", path))
        for path in set(our_fields) - set(kaito_fields):
            found.add((version, "only ours", path))
        for path in set(our_fields) & set(kaito_fields):
            for key in ("type", *KEYWORDS):
                if our_fields[path].get(key) != kaito_fields[path].get(key):
                    found.add((version, key, path))
        if our_columns != kaito_columns:
            found.add((version, "printer columns", ""))
    for key in ("group", "names", "scope"):
        if ours["spec"][key] != kaito["spec"][key]:
            found.add(("", key, ""))
    return found


def kaito_crd() -> dict[str, Any]:
    return yaml.safe_load(KAITO_CRD.read_text())


def test_only_documented_differences_from_kaitos_crd() -> None:
    differences = crd_differences(crd_manifest(), kaito_crd())
    assert sorted(differences - set(INTENDED)) == []  # a difference nobody documented
    assert sorted(set(INTENDED) - differences) == []  # a documented difference that is gone: drop it


def test_every_intended_difference_is_in_the_docs() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    section = doc.split("### The CRD against KAITO's", 1)[1].split("\n## ", 1)[0]
    for reason in set(INTENDED.values()):
        assert f"| {reason} |" in section, reason


def test_the_diff_sees_a_change() -> None:
    """The diff is not blind: dropping a field, a column or a marker from KAITO's copy shows up."""
    kaito = kaito_crd()
    [beta] = [v for v in kaito["spec"]["versions"] if v["name"] == "v1beta1"]
    del beta["schema"]["openAPIV3Schema"]["properties"]["resource"]["properties"]["preferredNodes"]
    beta["additionalPrinterColumns"].pop()
    del beta["schema"]["openAPIV3Schema"]["properties"]["resource"]["properties"]["labelSelector"][
        "x-kubernetes-map-type"]
    new = crd_differences(crd_manifest(), kaito) - set(INTENDED)
    assert new == {
        ("v1beta1", "only ours", "resource.preferredNodes"),
        ("v1beta1", "only ours", "resource.preferredNodes[]"),
        ("v1beta1", "printer columns", ""),
        ("v1beta1", "x-kubernetes-map-type", "resource.labelSelector"),
    }
