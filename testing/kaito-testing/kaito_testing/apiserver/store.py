"""The object store: resourceVersions, uids, generations, finalizers, owner cascade and the event log.

Every operation is synchronous and runs on the server's event loop, so each one is atomic, like a
single etcd transaction. Stored objects are never mutated in place (each write stores a new dict), so
events and watch snapshots can share them without copying.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from kaito_testing.apiserver.patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from kaito_testing.apiserver.resources import ResourceType, builtin_resources, from_crd
from kaito_testing.apiserver.selectors import Matcher

ResourceKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace or "", name)

CRD_KEY: ResourceKey = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY: ResourceKey = ("", "namespaces")


class ApiError(Exception):
    """An API failure rendered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" not found',
        {"name": name, "group": rt.group, "kind": rt.plural},
    )


def conflict(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {rt.plural}{'.' + rt.group if rt.group else ''} "
        f'"{name}": the object has been modified; please apply your changes to the latest '
        "version and try again",
        {"name": name, "group": rt.group, "kind": rt.plural},
    )


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    rv: int
    resource: ResourceKey
    type: str  # ADDED | MODIFIED | DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclass(eq=False)
class Watcher:
    resource: ResourceKey
    namespace: str | None
    labels: Matcher
    fields: Matcher
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        return self.labels(meta.get("labels") or {}) and self.fields(obj)


def _schema_for_jsonschema(schema: Any) -> Any:
    """OpenAPI v3 (structural) -> JSON Schema: nullable and int-or-string."""
    if isinstance(schema, list):
        return [_schema_for_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _schema_for_jsonschema(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _apply_defaults(obj: Any, schema: Mapping[str, Any]) -> Any:
    if not isinstance(obj, dict):
        if isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
            return [_apply_defaults(item, schema["items"]) for item in obj]
        return obj
    properties = schema.get("properties") or {}
    for name, sub in properties.items():
        if name not in obj and "default" in sub:
            obj[name] = copy.deepcopy(sub["default"])
        if name in obj:
            obj[name] = _apply_defaults(obj[name], sub)
    return obj


class Store:
    def __init__(self, history: int = 100_000) -> None:
        self.resources: dict[ResourceKey, ResourceType] = {}
        self.objects: dict[ResourceKey, dict[ObjectKey, dict[str, Any]]] = {}
        self.rv = 0
        self.history: deque[Event] = deque(maxlen=history)
        self.compacted = 0  # events at or below this revision are gone from history
        self.watchers: set[Watcher] = set()
        self._validators: dict[tuple[ResourceKey, str], jsonschema.protocols.Validator] = {}
        for rt in builtin_resources():
            self.add_resource(rt)
        for namespace in ("default", "kube-system"):
            self.create(self.resources[NAMESPACE_KEY], "", {"metadata": {"name": namespace}})

    # ------------------------------------------------------------------ resource types

    def add_resource(self, rt: ResourceType) -> None:
        self.resources[rt.key] = rt
        self.objects.setdefault(rt.key, {})
        for key in [k for k in self._validators if k[0] == rt.key]:
            del self._validators[key]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        rt = self.resources.get((group, plural))
        if rt is None or version not in rt.versions:
            return None
        return rt

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in self.resources.values():
            if rt.group == group and rt.kind == kind and version in rt.versions:
                return rt
        return None

    # ------------------------------------------------------------------ reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects[rt.key].get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def select(
        self, rt: ResourceType, namespace: str | None, labels: Matcher, fields: Matcher
    ) -> list[dict[str, Any]]:
        items = []
        for (ns, _name), obj in sorted(self.objects[rt.key].items()):
            if namespace is not None and rt.namespaced and ns != namespace:
                continue
            if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                items.append(obj)
        return items

    def all_objects(self) -> Iterator[tuple[ResourceType, dict[str, Any]]]:
        for key, objects in self.objects.items():
            for obj in list(objects.values()):
                yield self.resources[key], obj

    # ------------------------------------------------------------------ writes

    def create(
        self, rt: ResourceType, namespace: str, body: dict[str, Any], version: str | None = None
    ) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            if ("", namespace) not in self.objects[NAMESPACE_KEY]:
                raise ApiError(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    {"name": namespace, "kind": "namespaces"},
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
            namespace = ""
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(
                    422,
                    "Invalid",
                    f"{rt.kind}.{rt.group or 'core'} is invalid: metadata.name: "
                    "Required value: name or generateName is required",
                )
            meta["name"] = self._generate_name(rt, namespace, meta["generateName"])
        if (namespace, meta["name"]) in self.objects[rt.key]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rt.plural}{"." + rt.group if rt.group else ""} "{meta["name"]}" already exists',
                {"name": meta["name"], "group": rt.group, "kind": rt.plural},
            )
        for owner in meta.get("ownerReferences") or []:
            if not owner.get("uid"):
                raise ApiError(
                    422, "Invalid", 'metadata.ownerReferences.uid: Invalid value: "": uid must not be empty'
                )
        obj["apiVersion"] = rt.api_version(rt.versions[0])
        obj["kind"] = rt.kind
        if rt.status_subresource or rt.key == CRD_KEY:
            obj.pop("status", None)
        for volatile in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(volatile, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.status_subresource or rt.group not in ("",):
            meta["generation"] = 1
        obj = self._admit_schema(rt, obj, version or rt.versions[0])
        if rt.key == CRD_KEY:
            self.add_resource(from_crd(obj))
            obj["status"] = self._crd_status(obj)
        self._store(rt, namespace, meta["name"], obj, None)
        return obj

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        old = self.get(rt, namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if meta.get("name") not in (None, name):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        return self._update(rt, old, copy.deepcopy(body), subresource, version)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        subresource: str | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        old = self.get(rt, namespace, name)
        try:
            if patch_type == "json":
                new = json_patch(old, patch)
            elif patch_type == "strategic":
                if rt.group not in ("", "apps", "batch"):
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "strategic merge patch is not supported for custom resources; use a JSON merge patch",
                    )
                new = strategic_merge_patch(old, patch)
            else:
                new = merge_patch(old, patch)
        except PatchError as exc:
            raise ApiError(422, "Invalid", f"the patch cannot be applied: {exc}") from None
        if not isinstance(new, dict):
            raise ApiError(422, "Invalid", "the patch must leave an object")
        rv = (new.get("metadata") or {}).get("resourceVersion")
        if (
            rv
            and rv != old["metadata"]["resourceVersion"]
            and isinstance(patch, dict)
            and (patch.get("metadata") or {}).get("resourceVersion")
        ):
            raise conflict(rt, name)
        return self._update(rt, old, new, subresource, version)

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        propagation: str = "Background",
    ) -> tuple[dict[str, Any], bool]:
        """Returns the object and whether it is gone (False: finalizers hold it)."""
        old = self.get(rt, namespace, name)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old, False
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if "generation" in new["metadata"]:
                new["metadata"]["generation"] += 1
            self._store(rt, namespace, name, new, old)
            return new, False
        self._remove(rt, old, propagation)
        return old, True

    # ------------------------------------------------------------------ internals

    def _generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        for _ in range(100):
            candidate = prefix + uuid.uuid4().hex[:5]
            if (namespace, candidate) not in self.objects[rt.key]:
                return candidate
        raise ApiError(500, "InternalError", "could not generate a unique name")

    def _update(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        subresource: str | None,
        version: str | None,
    ) -> dict[str, Any]:
        name = old["metadata"]["name"]
        namespace = old["metadata"].get("namespace", "")
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif subresource:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({subresource})"
            )
        else:
            if rt.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        for fixed in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise ApiError(
                    422,
                    "Invalid",
                    f"metadata.finalizers: Forbidden: no new finalizers can be added "
                    f"if the object is being deleted, found new finalizers {sorted(added)}",
                )
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        if new == old:
            return old  # a no-op write does not bump the resourceVersion, as in the API server
        if "generation" in old_meta and subresource != "status" and _spec_of(new, rt) != _spec_of(old, rt):
            meta["generation"] = old_meta["generation"] + 1
        new = self._admit_schema(rt, new, version or rt.versions[0])
        if rt.key == CRD_KEY:
            self.add_resource(from_crd(new))
        self._store(rt, namespace, name, new, old)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rt, new, "Background")
        return new

    def _admit_schema(self, rt: ResourceType, obj: dict[str, Any], version: str) -> dict[str, Any]:
        schema = rt.schemas.get(version)
        if not schema:
            return obj
        obj = _apply_defaults(obj, schema)
        key = (rt.key, version)
        if key not in self._validators:
            self._validators[key] = jsonschema.Draft7Validator(_schema_for_jsonschema(schema))
        errors = sorted(self._validators[key].iter_errors(obj), key=lambda e: list(e.absolute_path))
        if errors:
            causes = [
                f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:10]
            ]
            raise ApiError(
                422,
                "Invalid",
                f'{rt.kind}.{rt.group} "{obj["metadata"].get("name")}" is invalid: ' + "; ".join(causes),
                {"causes": causes},
            )
        return obj

    @staticmethod
    def _crd_status(crd: dict[str, Any]) -> dict[str, Any]:
        stamp = now()
        return {
            "acceptedNames": crd["spec"]["names"],
            "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": "", "lastTransitionTime": stamp}
                for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
            ],
        }

    def _store(
        self, rt: ResourceType, namespace: str, name: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[rt.key][(namespace, name)] = obj
        self._emit(Event(self.rv, rt.key, "ADDED" if old is None else "MODIFIED", obj, old))

    def _remove(self, rt: ResourceType, obj: dict[str, Any], propagation: str) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        if key not in self.objects[rt.key]:
            return
        del self.objects[rt.key][key]
        self.rv += 1
        final = {**obj, "metadata": {**meta, "resourceVersion": str(self.rv)}}
        self._emit(Event(self.rv, rt.key, "DELETED", final, obj))
        if rt.key == CRD_KEY:
            gone = from_crd(obj)
            self.resources.pop(gone.key, None)
            self.objects.pop(gone.key, None)
        self._collect_dependents(meta["uid"], propagation)

    def _collect_dependents(self, uid: str, propagation: str) -> None:
        """The garbage collector: dependents whose owners are all gone are deleted (or orphaned)."""
        live_uids = {o["metadata"]["uid"] for _, o in self.all_objects()}
        for rt, obj in list(self.all_objects()):
            owners = obj["metadata"].get("ownerReferences") or []
            if not any(o.get("uid") == uid for o in owners):
                continue
            namespace = obj["metadata"].get("namespace", "")
            if propagation == "Orphan":
                remaining = [o for o in owners if o.get("uid") != uid]
                self.patch(
                    rt,
                    namespace,
                    obj["metadata"]["name"],
                    "merge",
                    {"metadata": {"ownerReferences": remaining or None}},
                )
            elif not any(o.get("uid") in live_uids for o in owners if o.get("uid") != uid):
                self.delete(rt, namespace, obj["metadata"]["name"], propagation)

    def _emit(self, event: Event) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted = self.history[0].rv
        self.history.append(event)
        for watcher in list(self.watchers):
            if watcher.resource != event.resource:
                continue
            was, isnow = watcher.matches(event.old), watcher.matches(event.obj)
            if event.type == "DELETED":
                if was:
                    watcher.queue.put_nowait(event)
            elif isnow:
                kind = "ADDED" if (event.type == "MODIFIED" and not was) else event.type
                watcher.queue.put_nowait(
                    event
                    if kind == event.type
                    else Event(event.rv, event.resource, kind, event.obj, event.old)
                )
            elif was:
                watcher.queue.put_nowait(Event(event.rv, event.resource, "DELETED", event.obj, event.old))

    def compact(self) -> None:
        """Forget the event history (as etcd compaction does): older watches get 410 Gone."""
        self.compacted = self.rv
        self.history.clear()

    def events_since(self, watcher: Watcher, rv: int) -> list[Event]:
        if rv < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.compacted})")
        replay: list[Event] = []
        for event in self.history:
            if event.rv <= rv or event.resource != watcher.resource:
                continue
            if watcher.matches(event.obj) or watcher.matches(event.old):
                replay.append(event)
        return replay

    def mutate(self, fn: Callable[[Store], Any]) -> Any:
        return fn(self)


def _spec_of(obj: Mapping[str, Any], rt: ResourceType) -> dict[str, Any]:
    skip = (
        {"metadata", "status", "apiVersion", "kind"}
        if rt.status_subresource
        else {"metadata", "apiVersion", "kind"}
    )
    return {k: v for k, v in obj.items() if k not in skip}
