"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

Columns are Name, then the CRD's additionalPrinterColumns (or Age for types without any); ``date``
columns are rendered as an age, as the API server does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kaito_testing.apiserver.jsonpath import evaluate
from kaito_testing.apiserver.resources import ResourceType

_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this object "
    "was created.",
}


def human_age(timestamp: str) -> str:
    try:
        then = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((dt.datetime.now(dt.UTC) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    try:
        values = evaluate(obj, column["jsonPath"])
    except ValueError:
        return None
    if not values:
        return None
    value = values[0]
    if column.get("type") == "date" and isinstance(value, str):
        return human_age(value)
    if isinstance(value, dict | list):
        import json

        return json.dumps(value)
    return value


def table(
    rt: ResourceType, version: str, objects: list[dict[str, Any]], list_meta: dict[str, Any]
) -> dict[str, Any]:
    columns = rt.printer_columns.get(version) or [_AGE]
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    definitions += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objects:
        rows.append(
            {
                "cells": [obj["metadata"]["name"], *(_cell(obj, c) for c in columns)],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
