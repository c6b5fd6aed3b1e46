"""The HTTP face of the emulator: Kubernetes API paths, discovery, watch streams, admission webhooks.

Every request is recorded as ``(user, verb, group, resource[/subresource])`` so a test can derive the
RBAC rules an operator needs from what it actually called. The user is the bearer token of the
request (a kubeconfig written by :meth:`ApiServer.kubeconfig` names it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import aiohttp
import yaml
from aiohttp import web

from kaito_testing.apiserver import openapi
from kaito_testing.apiserver.resources import ResourceType
from kaito_testing.apiserver.selectors import SelectorError, parse_field_selector, parse_label_selector
from kaito_testing.apiserver.store import ApiError, Event, Store, Watcher, not_found
from kaito_testing.apiserver.tables import table

T = TypeVar("T")
VERSION_INFO = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-kaito-emulator",
    "platform": "linux/amd64",
    "goVersion": "go1.24",
    "compiler": "gc",
    "buildDate": "2026-01-01T00:00:00Z",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
}
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}


@dataclass(frozen=True)
class Call:
    """One request as RBAC sees it."""

    user: str
    verb: str
    group: str
    resource: str  # "workspaces" or "workspaces/status"
    namespace: str
    name: str
    code: int


@dataclass
class Fault:
    """Answer the next ``times`` matching requests with an error instead of serving them."""

    verb: str
    resource: str
    code: int
    times: int = 1
    user: str | None = None

    def matches(self, call: Call) -> bool:
        return (
            self.times > 0
            and call.verb == self.verb
            and call.resource == self.resource
            and (self.user is None or self.user == call.user)
        )


@dataclass
class _Target:
    rt: ResourceType
    version: str
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )


def _served(obj: dict[str, Any], rt: ResourceType, version: str) -> dict[str, Any]:
    if obj.get("apiVersion") == rt.api_version(version):
        return obj
    return {**obj, "apiVersion": rt.api_version(version)}


class Emulator:
    """The aiohttp application over a :class:`Store`."""

    def __init__(self, store: Store | None = None, bookmark_interval: float = 5.0) -> None:
        self.store = store or Store()
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.bookmark_interval = bookmark_interval
        self._closing: set[asyncio.Event] = set()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    # ------------------------------------------------------------------ test controls

    def drop_watches(self) -> None:
        """Close every open watch stream (clients must re-list or resume)."""
        for event in list(self._closing):
            event.set()

    def calls_by(self, user: str) -> list[Call]:
        return [c for c in self.calls if c.user == user]

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        try:
            if path in ("/healthz", "/readyz", "/livez"):
                return web.Response(text="ok")
            if path == "/version":
                return _json(VERSION_INFO)
            if path == "/openapi/v3":
                return _json(openapi.root(self.store.resources.values()))
            if path.startswith("/openapi/v3/"):
                rest = parts[2:]
                group, version = ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2])
                doc = openapi.document(self.store.resources.values(), group, version)
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return _json(doc)
            if path == "/_emulator/calls":  # not a Kubernetes path: the request log, for benchmarks
                user = request.query.get("user")
                return _json([c.__dict__ for c in self.calls if user is None or c.user == user])
            if path == "/api":
                return _json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                        ],
                    }
                )
            if path == "/apis":
                return _json(self._group_list())
            if parts[0] == "apis" and len(parts) == 2:
                found = next((g for g in self._group_list()["groups"] if g["name"] == parts[1]), None)
                if found is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return _json({"kind": "APIGroup", "apiVersion": "v1", **found})
            if parts[0] == "api" and len(parts) == 2:
                return _json(self._resource_list("", parts[1]))
            if parts[0] == "apis" and len(parts) == 3:
                return _json(self._resource_list(parts[1], parts[2]))
            if parts[0] in ("api", "apis"):
                return await self._resource_request(request, parts)
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        except ApiError as exc:
            return _json(exc.status(), exc.code)

    def _group_list(self) -> dict[str, Any]:
        groups: dict[str, list[str]] = {}
        for rt in self.store.resources.values():
            if rt.group:
                known = groups.setdefault(rt.group, [])
                known.extend(v for v in rt.versions if v not in known)
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": name,
                    "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in versions],
                    "preferredVersion": {"groupVersion": f"{name}/{versions[0]}", "version": versions[0]},
                }
                for name, versions in sorted(groups.items())
            ],
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        entries = [
            e
            for rt in self.store.resources.values()
            if rt.group == group and version in rt.versions
            for e in rt.discovery_entries()
        ]
        if not entries:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    def _target(self, parts: list[str]) -> _Target:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = self.store.find(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = self.store.find(group, version, rest[0])
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and not (
            (sub == "status" and rt.status_subresource) or (sub == "scale" and rt.scale_subresource)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return _Target(rt, version, namespace, name, sub)

    # ------------------------------------------------------------------ resources

    async def _resource_request(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        target = self._target(parts)
        query = {k: v[-1] for k, v in parse_qs(request.query_string, keep_blank_values=True).items()}
        watching = query.get("watch") in ("true", "1")
        verb = {
            "GET": "watch" if watching else ("get" if target.name else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if target.name else "deletecollection",
        }.get(request.method)
        if verb is None:
            raise ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed")
        auth = request.headers.get("Authorization", "")
        user = auth[7:] if auth.startswith("Bearer ") else "anonymous"
        resource = target.rt.plural + (f"/{target.subresource}" if target.subresource else "")
        call = Call(user, verb, target.rt.group, resource, target.namespace or "", target.name or "", 200)
        for fault in self.faults:
            if fault.matches(call):
                fault.times -= 1
                self.calls.append(Call(**{**call.__dict__, "code": fault.code}))
                error = ApiError(
                    fault.code,
                    "Conflict" if fault.code == 409 else "InternalError",
                    f"injected fault {fault.code} for {verb} {resource}",
                )
                return _json(error.status(), fault.code)
        if verb == "watch":  # recorded when it starts: a stream may stay open for minutes
            self.calls.append(call)
            return await self._serve(request, target, verb, query)
        try:
            response = await self._serve(request, target, verb, query)
        except ApiError as exc:
            self.calls.append(Call(**{**call.__dict__, "code": exc.code}))
            raise
        self.calls.append(Call(**{**call.__dict__, "code": response.status}))
        return response

    async def _serve(
        self, request: web.Request, target: _Target, verb: str, query: dict[str, str]
    ) -> web.StreamResponse:
        rt, version, store = target.rt, target.version, self.store
        namespace = target.namespace or ""
        if target.rt.namespaced and target.name and target.namespace is None and verb != "list":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if verb in ("list", "watch", "deletecollection"):
            try:
                labels = parse_label_selector(query.get("labelSelector"))
                fields = parse_field_selector(query.get("fieldSelector"))
            except SelectorError as exc:
                raise ApiError(400, "BadRequest", str(exc)) from None
            if verb == "watch":
                return await self._watch(request, target, labels, fields, query)
            items = store.select(rt, target.namespace, labels, fields)
            if verb == "deletecollection":
                for obj in items:
                    store.delete(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                return _json({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
            return await self._list_response(request, target, items, query)
        if verb == "get":
            obj = store.get(rt, namespace, target.name or "")
            if target.subresource == "scale":
                return _json(self._scale(obj))
            served = await self._one(obj, rt, version)
            if "as=Table" in request.headers.get("Accept", ""):
                return _json(
                    table(rt, version, [served], {"resourceVersion": obj["metadata"]["resourceVersion"]})
                )
            return _json(served)
        body = await self._body(request)
        dry_run = "dryRun" in query
        if verb == "create":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body must be an object")
            body, stored_as = await self._to_storage(body, rt, version)
            await self._admit(rt, version, "CREATE", namespace, body, None, user=request.headers)
            if dry_run:
                return _json(await self._one(body, rt, version), 201)
            obj = store.create(rt, namespace, body, stored_as)
            return _json(await self._one(obj, rt, version), 201)
        name = target.name or ""
        if verb == "delete":
            options = body if isinstance(body, dict) else {}
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            obj, gone = store.delete(rt, namespace, name, propagation)
            if gone and not rt.group:
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "kind": rt.plural, "uid": obj["metadata"]["uid"]},
                    }
                )
            return _json(await self._one(obj, rt, version))
        if target.subresource == "scale":
            raise ApiError(405, "MethodNotAllowed", "writing the scale subresource is not supported here")
        old = store.get(rt, namespace, name)
        if verb == "update":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body must be an object")
            body, stored_as = await self._to_storage(body, rt, version)
            if target.subresource is None:
                await self._admit(rt, version, "UPDATE", namespace, body, old, user=request.headers)
            obj = store.replace(rt, namespace, name, body, target.subresource, stored_as)
        else:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type not in PATCH_TYPES:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown "
                    f"format - accepted media types include: {', '.join(PATCH_TYPES)}",
                )
            if target.subresource is None and self._has_webhooks():
                from kaito_testing.apiserver.patches import (
                    json_patch,
                    merge_patch,
                    strategic_merge_patch,
                )

                kind = PATCH_TYPES[content_type]
                apply = {"json": json_patch, "merge": merge_patch, "strategic": strategic_merge_patch}[kind]
                with contextlib.suppress(Exception):
                    await self._admit(
                        rt, version, "UPDATE", namespace, apply(old, body), old, user=request.headers
                    )
            obj = store.patch(
                rt, namespace, name, PATCH_TYPES[content_type], body, target.subresource, version
            )
        return _json(await self._one(obj, rt, version))

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ApiError(400, "BadRequest", f"the body is neither JSON nor YAML: {exc}") from None

    @staticmethod
    def _scale(obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: obj["metadata"][k]
                for k in ("name", "namespace", "uid", "resourceVersion")
                if k in obj["metadata"]
            },
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0)},
        }

    async def _list_response(
        self, request: web.Request, target: _Target, items: list[dict[str, Any]], query: dict[str, str]
    ) -> web.Response:
        rt, version = target.rt, target.version
        list_rv = str(self.store.rv)
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start, list_rv = int(token["start"]), str(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "invalid continue token") from None
        limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else 0
        page = items[start : start + limit] if limit else items[start:]
        meta: dict[str, Any] = {"resourceVersion": list_rv}
        if limit and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"start": start + limit, "rv": list_rv}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        page = await self._in_version(page, rt, version)
        if "as=Table" in request.headers.get("Accept", ""):
            return _json(table(rt, version, page, meta))
        return _json(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version(version),
                "metadata": meta,
                "items": page,
            }
        )

    # ------------------------------------------------------------------ watch

    async def _watch(
        self, request: web.Request, target: _Target, labels: Any, fields: Any, query: dict[str, str]
    ) -> web.StreamResponse:
        rt, version, store = target.rt, target.version, self.store
        watcher = Watcher(rt.key, target.namespace if rt.namespaced else None, labels, fields)
        since = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        initial_end = query.get("sendInitialEvents") in ("true", "1")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        pending: list[Event] = []
        gone: ApiError | None = None
        # Registering and reading the backlog happen without an await in between: no event is lost.
        store.watchers.add(watcher)
        if since in ("", "0") or initial_end:
            for obj in store.select(rt, target.namespace, labels, fields):
                pending.append(Event(int(obj["metadata"]["resourceVersion"]), rt.key, "ADDED", obj, None))
        else:
            try:
                pending = store.events_since(watcher, int(since))
            except ValueError:
                store.watchers.discard(watcher)
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}") from None
            except ApiError as exc:
                gone = exc
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        )
        closing = asyncio.Event()
        self._closing.add(closing)
        try:
            await response.prepare(request)
            if gone is not None:
                await response.write(self._line({"type": "ERROR", "object": gone.status()}))
                return response
            for event in pending:
                await response.write(await self._event_line(event, rt, version))
            if initial_end:
                await response.write(self._line(self._bookmark(rt, version, initial=True)))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout if timeout else None
            while not closing.is_set():
                wait = self.bookmark_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        break
                getter = asyncio.ensure_future(watcher.queue.get())
                closer = asyncio.ensure_future(closing.wait())
                done, _ = await asyncio.wait(
                    {getter, closer}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                closer.cancel()
                if getter not in done:
                    getter.cancel()
                    if bookmarks and not closing.is_set():
                        await response.write(self._line(self._bookmark(rt, version)))
                    continue
                received = getter.result()
                if received is None:
                    break
                await response.write(await self._event_line(received, rt, version))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.watchers.discard(watcher)
            self._closing.discard(closing)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    def _bookmark(self, rt: ResourceType, version: str, initial: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(self.store.rv)}
        if initial:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": meta},
        }

    @staticmethod
    def _line(data: dict[str, Any]) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    async def _event_line(self, event: Event, rt: ResourceType, version: str) -> bytes:
        return self._line({"type": event.type, "object": await self._one(event.obj, rt, version)})

    # ------------------------------------------------------------------ conversion

    async def _one(self, obj: dict[str, Any], rt: ResourceType, version: str) -> dict[str, Any]:
        [served] = await self._in_version([obj], rt, version)
        return served

    async def _to_storage(
        self, body: dict[str, Any], rt: ResourceType, version: str
    ) -> tuple[dict[str, Any], str]:
        """A written object in the storage version (through the conversion webhook when the CRD has one)
        and the version its schema is checked in."""
        if rt.conversion.get("strategy") != "Webhook" or version == rt.versions[0]:
            return body, version
        return await self._one({**body, "apiVersion": body.get("apiVersion") or rt.api_version(version)},
                               rt, rt.versions[0]), rt.versions[0]

    async def _in_version(
        self, objs: list[dict[str, Any]], rt: ResourceType, version: str
    ) -> list[dict[str, Any]]:
        """Objects as ``version`` serves them: ``conversion.strategy: Webhook`` posts a ConversionReview
        (clientConfig.url only), as the API server does; otherwise only apiVersion changes (None)."""
        target = rt.api_version(version)
        pending = [o for o in objs if o.get("apiVersion") != target]
        if rt.conversion.get("strategy") != "Webhook" or not pending:
            return [_served(o, rt, version) for o in objs]
        client = (rt.conversion.get("webhook") or {}).get("clientConfig") or {}
        what = f"conversion webhook for {target}, Kind={rt.kind}"
        url = client.get("url")
        if not url:
            raise ApiError(500, "InternalError", f"{what} failed: the emulator can only call webhooks by "
                                                 "clientConfig.url")
        context: ssl.SSLContext | None = None
        if url.startswith("https"):
            context = ssl.create_default_context()
            if client.get("caBundle"):
                context.load_verify_locations(cadata=base64.b64decode(client["caBundle"]).decode())
        review = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "ConversionReview",
            "request": {"uid": str(uuid.uuid4()), "desiredAPIVersion": target, "objects": pending},
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
                session.post(url, json=review, ssl=context if context else False) as reply,
            ):
                answer = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ApiError(500, "InternalError", f"{what} failed: {exc}") from None
        response = (answer or {}).get("response") or {}
        result = response.get("result") or {}
        converted = response.get("convertedObjects") or []
        if result.get("status") != "Success" or len(converted) != len(pending):
            raise ApiError(500, "InternalError", f"{what} failed: {result.get('message', 'no objects')}")
        done = iter(converted)
        return [next(done) if o.get("apiVersion") != target else o for o in objs]

    # ------------------------------------------------------------------ admission

    def _has_webhooks(self) -> bool:
        return bool(
            self.store.objects.get(("admissionregistration.k8s.io", "validatingwebhookconfigurations"))
        )

    async def _admit(
        self,
        rt: ResourceType,
        version: str,
        operation: str,
        namespace: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        user: Any,
    ) -> None:
        """Call every matching ValidatingWebhookConfiguration (clientConfig.url only), as the API server."""
        configs = self.store.objects.get(
            ("admissionregistration.k8s.io", "validatingwebhookconfigurations"), {}
        )
        for config in list(configs.values()):
            for hook in config.get("webhooks") or []:
                sent_version = _rule_matches(hook, rt, version, operation)
                if sent_version is None:
                    continue
                await self._call_webhook(hook, rt, sent_version, version, operation, namespace, obj, old)

    async def _call_webhook(
        self,
        hook: dict[str, Any],
        rt: ResourceType,
        version: str,
        request_version: str,
        operation: str,
        namespace: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> None:
        client = hook.get("clientConfig") or {}
        url = client.get("url")
        fail_open = hook.get("failurePolicy", "Fail") == "Ignore"
        if not url:
            if fail_open:
                return
            raise ApiError(
                500,
                "InternalError",
                f'failed calling webhook "{hook.get("name")}": the emulator can '
                "only call webhooks by clientConfig.url",
            )
        context: ssl.SSLContext | None = None
        if url.startswith("https"):
            context = ssl.create_default_context()
            if client.get("caBundle"):
                context.load_verify_locations(cadata=base64.b64decode(client["caBundle"]).decode())
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": obj.get("metadata", {}).get("uid") or "00000000-0000-0000-0000-000000000000",
                "kind": {"group": rt.group, "version": version, "kind": rt.kind},
                "resource": {"group": rt.group, "version": version, "resource": rt.plural},
                "requestKind": {"group": rt.group, "version": request_version, "kind": rt.kind},
                "requestResource": {"group": rt.group, "version": request_version, "resource": rt.plural},
                "name": obj.get("metadata", {}).get("name", ""),
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "emulator"},
                "object": _served(obj, rt, version),
                "oldObject": _served(old, rt, version) if old else None,
                "dryRun": False,
                "options": {"kind": f"{operation.capitalize()}Options", "apiVersion": "meta.k8s.io/v1"},
            },
        }
        try:
            timeout = aiohttp.ClientTimeout(total=float(hook.get("timeoutSeconds", 10)))
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=review, ssl=context if context else False) as reply,
            ):
                answer = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if fail_open:
                return
            raise ApiError(
                500, "InternalError", f'failed calling webhook "{hook.get("name")}": {exc}'
            ) from None
        verdict = (answer or {}).get("response") or {}
        if not verdict.get("allowed", False):
            result = verdict.get("status") or {}
            code = int(result.get("code") or 400)
            raise ApiError(
                code,
                result.get("reason") or "BadRequest",
                f'admission webhook "{hook.get("name")}" denied the request: {result.get("message", "")}',
            )


def _rule_matches(hook: dict[str, Any], rt: ResourceType, version: str, operation: str) -> str | None:
    """The version to send the object in when a webhook's rules cover the request, else None.

    ``matchPolicy: Equivalent`` (the default) matches the resource in any served version; the object
    is then sent converted to a version the rule names (conversion strategy None: only apiVersion).
    """
    equivalent = hook.get("matchPolicy", "Equivalent") == "Equivalent"

    def has(values: list[str] | None, value: str) -> bool:
        return values is not None and ("*" in values or value in values)

    for rule in hook.get("rules") or []:
        if not (
            has(rule.get("operations"), operation)
            and has(rule.get("apiGroups"), rt.group)
            and has(rule.get("resources"), rt.plural)
        ):
            continue
        versions = rule.get("apiVersions") or []
        if has(versions, version):
            return version
        if equivalent:
            return next((v for v in versions if v in rt.versions), None)
    return None


class ApiServer:
    """The emulator on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self, port: int = 0, history: int = 100_000, bookmark_interval: float = 5.0) -> None:
        self.emulator = Emulator(Store(history=history), bookmark_interval=bookmark_interval)
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apiserver", daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._tmp = tempfile.TemporaryDirectory(prefix="kaito-apiserver-")

    @property
    def store(self) -> Store:
        return self.emulator.store

    def start(self) -> ApiServer:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.emulator.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self.emulator.drop_watches)
            self.run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._tmp.cleanup()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the server's loop (store operations must run there); returns a deep copy, as
        stored objects must never be changed in place."""

        async def wrapper() -> T:
            return copy.deepcopy(fn(*args, **kwargs))

        return self.run(wrapper())

    # ------------------------------------------------------------------ conveniences for tests

    def kubeconfig(self, user: str = "admin", path: Path | None = None) -> Path:
        """A kubeconfig for this server whose bearer token is ``user`` (the name calls are recorded by)."""
        path = path or Path(self._tmp.name) / f"kubeconfig-{user}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": {"token": user}}],
            "contexts": [
                {"name": "emulator", "context": {"cluster": "emulator", "user": user, "namespace": "default"}}
            ],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace it keeping its resourceVersion (store-level, not recorded)."""

        def do(store: Store) -> dict[str, Any]:
            rt = store.by_kind(obj["apiVersion"], obj["kind"])
            if rt is None:
                raise ApiError(404, "NotFound", f"no resource for {obj['apiVersion']} {obj['kind']}")
            namespace = obj["metadata"].get("namespace", "default") if rt.namespaced else ""
            version = obj["apiVersion"].rpartition("/")[2]
            try:
                current = store.get(rt, namespace, obj["metadata"]["name"])
            except ApiError:
                return store.create(rt, namespace, obj, version)
            body = {
                **obj,
                "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            return store.replace(rt, namespace, obj["metadata"]["name"], body, None, version)

        return self.call(self.store.mutate, do)

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        def do(store: Store) -> dict[str, Any] | None:
            rt = store.by_kind(api_version, kind)
            if rt is None:
                raise not_found(ResourceType("", ("v1",), kind.lower(), kind, False), name)
            try:
                return store.get(rt, namespace if rt.namespaced else "", name)
            except ApiError:
                return None

        return self.call(self.store.mutate, do)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        def do(store: Store) -> list[dict[str, Any]]:
            rt = store.by_kind(api_version, kind)
            if rt is None:
                return []
            return store.select(rt, namespace, parse_label_selector(selector), lambda o: True)

        return self.call(self.store.mutate, do)

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Play a controller or the kubelet: merge ``status`` into the object's status."""

        def do(store: Store) -> dict[str, Any]:
            rt = store.by_kind(api_version, kind)
            assert rt is not None
            sub = "status" if rt.status_subresource else None
            return store.patch(rt, namespace if rt.namespaced else "", name, "merge", {"status": status}, sub)

        return self.call(self.store.mutate, do)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "") -> None:
        def do(store: Store) -> None:
            rt = store.by_kind(api_version, kind)
            assert rt is not None
            store.delete(rt, namespace if rt.namespaced else "", name)

        self.call(self.store.mutate, do)

    def compact(self) -> None:
        self.call(self.store.compact)

    def drop_watches(self) -> None:
        self.call(self.emulator.drop_watches)

    def inject(self, fault: Fault) -> None:
        self.call(self.emulator.faults.append, fault)
