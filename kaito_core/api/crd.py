"""The Workspace CustomResourceDefinition, generated from the pydantic models (one source of truth).

``kaito crd`` prints it and ``crds/kaito.sh_workspaces.yaml`` holds it; a test fails when the two
differ. The JSON schema pydantic writes is rewritten into a *structural* openAPIV3Schema: no ``$ref``
(definitions are inlined), no ``anyOf`` for optional fields, a ``type`` on every node except the
schemaless ones (``x-kubernetes-preserve-unknown-fields``), ``metadata`` left to the API server.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from kaito_core.api.models import Workspace
from kaito_core.api.names import GROUP, KIND
from kaito_core.api.v1alpha1 import WorkspaceV1Alpha1

PLURAL = "workspaces"
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_PATH = "crds/kaito.sh_workspaces.yaml"
HEADER = "# Generated from kaito_core/api by `kaito crd > crds/kaito.sh_workspaces.yaml`; do not edit.\n"

PRESERVE = "x-kubernetes-preserve-unknown-fields"
#: Keywords a structural schema may carry that we copy through unchanged.
_KEEP = ("description", "type", "format", "enum", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", PRESERVE,
         "x-kubernetes-list-type", "x-kubernetes-map-type")


def _condition_column(condition: str) -> dict[str, str]:
    return {
        "name": condition,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
    }


def printer_columns(version: str) -> list[dict[str, Any]]:
    """``kubectl get workspace`` columns: the instance type, the condition statuses, the age."""
    conditions = ["ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded"]
    columns: list[dict[str, Any]] = [
        {"name": "Instance", "type": "string", "jsonPath": ".resource.instanceType"}
    ]
    columns += [_condition_column(c) for c in conditions]
    if version == "v1beta1":  # shown by default, as KAITO shows them
        columns += [
            {"name": "TargetNodeCount", "type": "integer", "jsonPath": ".status.targetNodeCount"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
        ]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return columns


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural openAPIV3Schema of a Workspace model (either version)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    definitions = raw.pop("$defs", {})
    schema = _structural(raw, definitions)
    properties = schema["properties"]
    properties["apiVersion"] = {"type": "string", "description": "kaito.sh/v1beta1 or kaito.sh/v1alpha1."}
    properties["kind"] = {"type": "string", "description": "Workspace."}
    # the API server owns the metadata schema; a CRD may only say that it is an object
    properties["metadata"] = {"type": "object"}
    # status is written by the operator and by kopf's bookkeeping, which must not be pruned
    properties["status"][PRESERVE] = True
    schema["description"] = (
        "Workspace runs a model for inference, or fine-tunes one, on GPU nodes it provisions.")
    return schema


def _structural(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, definitions)
    out: dict[str, Any] = {key: node[key] for key in _KEEP if key in node}
    if "description" in out:
        out["description"] = out["description"].replace("``", "")
    if "const" in node:
        out["enum"] = [node["const"]]
    if "default" in node and node["default"] is not None and node["default"] != [] and node["default"] != {}:
        out["default"] = node["default"]
    kind = node.get("type")
    if kind == "object":
        if "properties" in node:
            out["properties"] = {
                name: _structural(sub, definitions) for name, sub in node["properties"].items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
            if node.get("additionalProperties") is True:
                out[PRESERVE] = True  # a model that keeps unknown fields (extra="allow")
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = _structural(node["additionalProperties"], definitions)
        elif not out.get(PRESERVE):
            out[PRESERVE] = True  # dict[str, Any]: schemaless
    elif kind == "array":
        out["items"] = _structural(node.get("items", {}), definitions)
    return out


def _resolve(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref`` and collapse ``anyOf: [X, null]`` into X, keeping the outer description/default."""
    outer = {k: v for k, v in node.items() if k not in ("$ref", "anyOf", "allOf")}
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} types in a structural schema: {node}")
        inner = _resolve(options[0], definitions)
    elif "allOf" in node and len(node["allOf"]) == 1:
        inner = _resolve(node["allOf"][0], definitions)
    elif "$ref" in node:
        inner = _resolve(copy.deepcopy(definitions[node["$ref"].split("/")[-1]]), definitions)
    else:
        return node
    return {**inner, **outer}  # the field's own description wins over the type's docstring


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict: v1alpha1 and v1beta1 served, v1beta1 stored."""
    versions = []
    for model, storage in ((WorkspaceV1Alpha1, False), (Workspace, True)):
        version = str(model.version)
        versions.append({
            "name": version,
            "served": True,
            "storage": storage,
            "subresources": {"status": {}},
            "additionalPrinterColumns": printer_columns(version),
            "schema": {"openAPIV3Schema": openapi_schema(model)},
        })
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["wk", "wks"],
                "categories": ["workspace"],
            },
            "scope": "Namespaced",
            "versions": versions,
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML text of ``crds/kaito.sh_workspaces.yaml``."""
    return HEADER + yaml.safe_dump(crd_manifest(), sort_keys=False, default_flow_style=False, width=110)


def schema_for(version: str) -> dict[str, Any]:
    """The openAPIV3Schema of one served version (``v1alpha1`` or ``v1beta1``), from the CRD."""
    for entry in crd_manifest()["spec"]["versions"]:
        if entry["name"] == version.rsplit("/", 1)[-1]:
            schema: dict[str, Any] = entry["schema"]["openAPIV3Schema"]
            return schema
    raise ValueError(f"unknown Workspace version {version!r}; use one of: v1alpha1, v1beta1")
