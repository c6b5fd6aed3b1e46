"""A minimal OpenAPI v3 discovery, enough for kubectl.

For each group/version: one PATCH path per resource carrying ``x-kubernetes-group-version-kind`` and the
``fieldValidation`` query parameter, which tells kubectl the server validates fields itself (so it does
not need the full schemas client-side). CRD kinds carry their openAPIV3Schema in ``components``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from kaito_testing.apiserver.resources import ResourceType

_FIELD_VALIDATION = {
    "name": "fieldValidation",
    "in": "query",
    "schema": {"type": "string", "uniqueItems": True},
}


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def root(resources: Iterable[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rt in resources:
        for version in rt.versions:
            path = gv_path(rt.group, version)
            digest = hashlib.sha256(repr(sorted(rt.schemas.get(version, {}).items())).encode()).hexdigest()[
                :16
            ]
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": paths}


def document(resources: Iterable[ResourceType], group: str, version: str) -> dict[str, Any] | None:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in resources:
        if rt.group != group or version not in rt.versions:
            continue
        gvk = {"group": group, "version": version, "kind": rt.kind}
        prefix = "/" + gv_path(group, version)
        item = (
            f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
            if rt.namespaced
            else f"{prefix}/{rt.plural}/{{name}}"
        )
        paths[item] = {
            "parameters": [_FIELD_VALIDATION],
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [_FIELD_VALIDATION],
                "x-kubernetes-action": "patch",
                "responses": {"200": {"description": "OK"}},
            },
        }
        schema = rt.schemas.get(version)
        if schema:
            name = ".".join(reversed(group.split("."))) + f".{version}.{rt.kind}"
            schemas[name] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
