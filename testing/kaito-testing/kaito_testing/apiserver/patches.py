"""The three patch formats the API server accepts.

Strategic merge is approximated: maps merge like a JSON merge patch, and lists of objects that carry a
``name`` (containers, env, ports, volumes, volumeMounts, conditions by ``type``) merge by that key, as
the Kubernetes patch strategy does for those fields; other lists are replaced. ``$patch`` directives
and ``$setElementOrder`` are not interpreted (the keys are dropped).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_MERGE_KEYS = ("name", "type", "containerPort", "mountPath")


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _merge_list(old: list[Any], new: list[Any]) -> list[Any]:
    if not (old and new and all(isinstance(x, dict) for x in old + new)):
        return copy.deepcopy(new)
    merge_key = next((k for k in _MERGE_KEYS if all(k in x for x in old + new)), None)
    if merge_key is None:
        return copy.deepcopy(new)
    merged = [dict(x) for x in old]
    index = {x[merge_key]: i for i, x in enumerate(merged)}
    for item in new:
        if item[merge_key] in index:
            position = index[item[merge_key]]
            merged[position] = strategic_merge_patch(merged[position], item)
        else:
            index[item[merge_key]] = len(merged)
            merged.append(copy.deepcopy(item))
    return merged


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            if part not in doc:
                raise PatchError(f"path segment {part!r} not found")
            doc = doc[part]
        else:
            raise PatchError(f"cannot descend into {type(doc).__name__} at {part!r}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind = op["op"]
        if kind in ("move", "copy"):
            value = copy.deepcopy(_walk(doc, _pointer(op["from"])))
            if kind == "move":
                doc = _remove(doc, _pointer(op["from"]))
            doc = _add(doc, _pointer(op["path"]), value)
        elif kind == "add":
            doc = _add(doc, _pointer(op["path"]), copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, _pointer(op["path"]))
        elif kind == "replace":
            _walk(doc, _pointer(op["path"]))  # must exist
            doc = _remove(doc, _pointer(op["path"]))
            doc = _add(doc, _pointer(op["path"]), copy.deepcopy(op.get("value")))
        elif kind == "test":
            try:
                actual = _walk(doc, _pointer(op["path"]))
            except (PatchError, IndexError, ValueError) as exc:
                raise PatchError(f"test failed at {op['path']}: {exc}") from None
            if actual != op.get("value"):
                raise PatchError(f"test failed at {op['path']}")
        else:
            raise PatchError(f"unknown JSON patch op {kind!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    try:
        parent = _walk(doc, parts[:-1])
    except (IndexError, ValueError) as exc:
        raise PatchError(str(exc)) from None
    last = parts[-1]
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            index = int(last)
            if index > len(parent):
                raise PatchError(f"index {index} out of range")
            parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"cannot add into {type(parent).__name__}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise PatchError("cannot remove the whole document")
    try:
        parent = _walk(doc, parts[:-1])
        last = parts[-1]
        if isinstance(parent, list):
            parent.pop(int(last))
        elif isinstance(parent, dict):
            if last not in parent:
                raise PatchError(f"path {'/'.join(parts)} not found")
            del parent[last]
        else:
            raise PatchError("cannot remove from a scalar")
    except (IndexError, ValueError) as exc:
        raise PatchError(str(exc)) from None
    return doc
