"""One reconciliation pass of a Workspace: nodes, then the workload, then the status.

Level-triggered: every pass compares what should exist with what the API server shows and writes only
the difference (a child whose ``kaito.sh/manifest-hash`` matches is left alone; an identical status is
not written), so an unchanged Workspace costs reads only, and a pass interrupted at any point is
completed by the next one without duplicates (children have fixed names; a create that meets
``AlreadyExists`` re-reads).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from kaito_core.api import Workspace
from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.kube import Kube
from kaito_core.operator.nodes import NodesOutcome, NodeStep
from kaito_core.operator.status import Check, build_status, pod_failure, same_status, workload_check
from kaito_core.operator.tuning import tuning_step
from kaito_core.planning import PlanError
from kaito_core.planning.labels import MANIFEST_HASH_ANNOTATION, WORKSPACE_LABEL
from kaito_core.planning.manifests import inference_manifests, template_manifests, worker_name
from kaito_core.planning.tuning import tuning_manifests
from kaito_core.plugins import Plan, PluginError, Registry

T = TypeVar("T")
#: The kinds the operator creates for a Workspace (pruned when no longer desired).
MANAGED_KINDS = ("ConfigMap", "Service", "Deployment", "StatefulSet")


@dataclass
class Outcome:
    status: dict[str, Any]
    requeue: float  # seconds until the next pass unless an event comes first
    waiting_for_nodes: bool = False
    wrote: int = 0  # objects created, replaced, deleted or status written


class Reconciler:
    def __init__(self, kube: Kube, registry: Registry, config: OperatorConfig) -> None:
        self.kube = kube
        self.registry = registry
        self.config = config
        self._semaphore: asyncio.Semaphore | None = None
        self._passes: asyncio.Semaphore | None = None
        self._written: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}  # key -> (rv, status)
        self._nodes = NodeStep(kube, registry, config, self.io)

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking API call in a worker thread, at most ``config.concurrency`` at once."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
        async with self._semaphore:
            return await asyncio.to_thread(fn, *args)

    # ------------------------------------------------------------------ the pass

    async def reconcile(self, body: Mapping[str, Any], prune: bool = False) -> Outcome:
        """One pass; at most ``2 x concurrency`` passes run at once, which bounds the memory a burst of
        events (an operator start over a thousand Workspaces) can hold in flight."""
        if self._passes is None:
            self._passes = asyncio.Semaphore(2 * self.config.concurrency)
        async with self._passes:
            return await self._reconcile(body, prune)

    async def _reconcile(self, body: Mapping[str, Any], prune: bool) -> Outcome:
        meta = body.get("metadata") or {}
        name, namespace = meta.get("name", ""), meta.get("namespace", "default")
        generation = meta.get("generation")
        current_status = self._known_status(namespace, name, body)
        try:
            ws = Workspace.model_validate({k: v for k, v in body.items() if k != "status"})
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            check = Check("False", "InvalidWorkspace", problem, failed=True)
            status = build_status(current_status, generation=generation, resource=check, inference=check)
            return await self._finish(namespace, name, current_status, status, 60.0, 0)

        resources = await self._nodes.resources(ws)
        requeue = self.config.resync_seconds
        wrote = 0
        job: Check | None = None
        outcome: Check | None = None
        inference: Check | None = None
        if ws.tuning is not None:
            job, outcome, wrote = await self._tuning(ws, resources)
        elif not resources.check.ok:
            inference = resources.plan_error or Check(
                "False", "ResourceNotReady", "waiting for the GPU nodes to be ready"
            )
        elif resources.plan_error is not None:
            inference = resources.plan_error
        else:
            inference, wrote = await self._inference(ws, resources.plan, prune)
        work = outcome or job or inference
        if not resources.check.ok:
            requeue = self.config.requeue_seconds * (15 if resources.check.failed else 1)
        elif work is not None and not work.ok:
            requeue = self.config.requeue_seconds * (15 if work.failed else 5)
        status = build_status(
            current_status,
            generation=generation,
            resource=resources.check,
            inference=inference,
            job=job,
            worker_nodes=resources.ready_nodes,
            target_node_count=resources.target,
            outcome=outcome,
        )
        if resources.model_revision:
            status["modelRevision"] = resources.model_revision  # also the kaito.sh/model-revision annotation
        result = await self._finish(namespace, name, current_status, status, requeue, wrote)
        result.waiting_for_nodes = not resources.check.ok
        return result

    def _known_status(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body's status, or the one this operator wrote last if the body is older than that write."""
        status = dict(body.get("status") or {})
        written = self._written.get((namespace, name))
        if written is not None:
            try:
                fresh = int((body.get("metadata") or {}).get("resourceVersion", "0")) >= written[0]
            except ValueError:
                fresh = True
            if not fresh:
                return dict(written[1])
        return status

    async def _finish(
        self,
        namespace: str,
        name: str,
        current: Mapping[str, Any],
        status: dict[str, Any],
        requeue: float,
        wrote: int,
    ) -> Outcome:
        if not same_status(current, status):
            reply = await self.io(self.kube.patch_workspace_status, namespace, name, status)
            try:
                self._written[(namespace, name)] = (int(reply["metadata"]["resourceVersion"]), status)
            except (KeyError, ValueError):
                self._written.pop((namespace, name), None)
            wrote += 1
        return Outcome(status=status, requeue=requeue, wrote=wrote)

    def forget(self, namespace: str, name: str) -> None:
        self._written.pop((namespace, name), None)

    # ------------------------------------------------------------------ children

    async def _apply(
        self, desired: list[dict[str, Any]], ws: Workspace, prune: bool
    ) -> tuple[dict[str, dict[str, Any]], int, Check | None]:
        """Create or replace what differs; returns the live objects by kind/name and the write count."""
        live: dict[str, dict[str, Any]] = {}
        wrote = 0
        for obj in desired:
            kind, name = obj["kind"], obj["metadata"]["name"]
            current = await self.io(self.kube.get, kind, ws.namespace, name)
            try:
                if current is None:
                    current = await self.io(self.kube.create, obj)
                    wrote += 1
                elif _hash(current) != _hash(obj):
                    if not _owned_by(current, ws):
                        return (
                            live,
                            wrote,
                            Check(
                                "False",
                                "ManifestFailed",
                                f"{kind} {ws.namespace}/{name} already exists and is not "
                                f"owned by Workspace {ws.name}; delete or rename it",
                                failed=True,
                            ),
                        )
                    current = await self.io(self.kube.replace, obj, current)
                    wrote += 1
            except ApiException as exc:
                if exc.status in (409, 404) or exc.status >= 500:
                    raise  # a conflict or a transient error: the next pass starts from fresh reads
                return (
                    live,
                    wrote,
                    Check(
                        "False",
                        "ManifestFailed",
                        f"{kind} {name}: the API server refused it: {_api_message(exc)}",
                        failed=True,
                    ),
                )
            live[f"{kind}/{name}"] = current
        if prune or wrote:
            wrote += await self._prune(ws, {f"{o['kind']}/{o['metadata']['name']}" for o in desired})
        return live, wrote, None

    async def _prune(self, ws: Workspace, desired: set[str]) -> int:
        deleted = 0
        for kind in MANAGED_KINDS:
            for obj in await self.io(
                self.kube.list_children, kind, ws.namespace, f"{WORKSPACE_LABEL}={ws.name}"
            ):
                name = obj["metadata"]["name"]
                if f"{kind}/{name}" not in desired and _owned_by(obj, ws):
                    await self.io(self.kube.delete, kind, ws.namespace, name)
                    deleted += 1
        return deleted

    async def _inference(self, ws: Workspace, plan: Plan | None, prune: bool) -> tuple[Check, int]:
        try:
            if plan is None:
                desired = template_manifests(ws)
            else:
                runtime = self.registry.runtime(plan.runtime)
                worker_container = getattr(runtime, "worker_container", None)
                worker = worker_container(plan) if plan.node_count > 1 and worker_container else None
                desired = inference_manifests(ws, plan, runtime.container(plan), self.config.images, worker)
        except (PlanError, PluginError) as exc:
            return Check("False", "ManifestFailed", str(exc), failed=True), 0
        live, wrote, problem = await self._apply(desired, ws, prune)
        if problem is not None:
            return problem, wrote
        workload = live.get(f"Deployment/{ws.name}") or live.get(f"StatefulSet/{ws.name}")
        check = workload_check(workload)
        workers = live.get(f"StatefulSet/{worker_name(ws)}")
        if check.ok and workers is not None:  # a multi-node Workspace: every worker pod must be ready too
            check = workload_check(workers)
        if not check.ok:
            pods = await self.io(self.kube.list_children, "Pod", ws.namespace, f"{WORKSPACE_LABEL}={ws.name}")
            check = pod_failure(pods) or check
        return check, wrote

    async def _tuning(self, ws: Workspace, resources: NodesOutcome) -> tuple[Check, Check | None, int]:
        """The tuning Job (kaito_core.operator.tuning): JobStarted, and the outcome its status shows."""
        if not resources.check.ok:
            return Check("False", "ResourceNotReady", "waiting for the GPU nodes to be ready"), None, 0
        try:
            desired = tuning_manifests(ws, self.registry, self.config.images)
        except (PlanError, PluginError, ValueError) as exc:
            return Check("False", "ManifestFailed", str(exc), failed=True), None, 0
        try:
            return await tuning_step(self.io, self.kube, desired[0])
        except ApiException as exc:
            if exc.status in (409, 404) or exc.status >= 500:
                raise  # a conflict or a transient error: the next pass starts from fresh reads
            refused = Check("False", "ManifestFailed", f"Job {ws.name}: the API server refused it: "
                            f"{_api_message(exc)}", failed=True)  # fmt: skip
            return refused, None, 0

    # ------------------------------------------------------------------ deletion

    async def release(self, name: str, namespace: str) -> None:
        """On delete, before the finalizer goes: the Workspace's NodeClaims are deleted (their controller
        removes the nodes), or the provisioner plugin deletes the nodes it made."""
        self.forget(namespace, name)
        if self.config.brings_nodes:
            return
        if self.config.writes_nodeclaims:
            await self._nodes.claims.release(name, namespace)
            return
        provisioner = self.registry.provisioner(self.config.provisioner)
        await self.io(provisioner.delete_nodes, name, namespace)


def _hash(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(MANIFEST_HASH_ANNOTATION)


def _owned_by(obj: Mapping[str, Any], ws: Workspace) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == ws.metadata.uid for r in refs)


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason)
