"""The JSONPath subset CRD printer columns use: ``.a.b``, ``.a[0]``, ``.a[?(@.k=="v")].b``."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*["']([^"']*)["']\)\]"""
)


def evaluate(obj: Any, path: str) -> list[Any]:
    """Every value the path selects (filters can select several)."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    current: list[Any] = [obj]
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if not match:
            raise ValueError(f"unsupported JSONPath {path!r} at {position}")
        position = match.end()
        key, index, filter_key, filter_value = match.groups()
        following: list[Any] = []
        for item in current:
            if key is not None and isinstance(item, dict) and key in item:
                following.append(item[key])
            elif index is not None and isinstance(item, list) and int(index) < len(item):
                following.append(item[int(index)])
            elif filter_key is not None and isinstance(item, list):
                for element in item:
                    value: Any = element
                    for part in filter_key.split("."):
                        value = value.get(part) if isinstance(value, dict) else None
                    if value is not None and str(value) == filter_value:
                        following.append(element)
        current = following
    return current
