"""The kopf handlers: thin; each one hands the Workspace to the Reconciler.

- a daemon per Workspace runs reconciliation passes: after any event about the Workspace or its
  children (woken), else after the Reconciler's requeue delay (polling only while waiting);
- ``on.delete`` (kopf keeps the finalizer while it runs): the NodeClaims or the provisioner's nodes go;
- ``on.event`` for Deployments, StatefulSets, Jobs and Pods labelled ``kaito.sh/workspace``, and for
  Nodes, wakes the daemon of the Workspace concerned; so do NodeClaims in the NodeClaim modes;
- ``on.validate``: the admission webhook (with KAITO's checks on the nodes a user brings, on create).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.kube import GROUP, NC_GROUP, NC_PLURAL, NC_VERSION, PLURAL, VERSION
from kaito_core.operator.reconcile import Reconciler
from kaito_core.operator.webhook import admission_problems
from kaito_core.planning.labels import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL
from kaito_core.plugins import Registry

log = logging.getLogger("kaito.operator")


class Wakeups:
    """One asyncio.Event per running Workspace daemon, keyed by (namespace, name)."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], asyncio.Event] = {}
        self.waiting_for_nodes: set[tuple[str, str]] = set()

    def wake(self, namespace: str | None, name: str | None) -> None:
        event = self.events.get((namespace or "", name or ""))
        if event is not None:
            event.set()

    def wake_node_waiters(self) -> None:
        for key in list(self.waiting_for_nodes):
            self.wake(*key)


async def _sleep(event: asyncio.Event, stopped: Any, seconds: float) -> None:
    """Until woken, stopped, or ``seconds`` pass."""
    waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def build_registry(
    reconciler: Reconciler, config: OperatorConfig, plugins: Registry | None
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    wakeups = Wakeups()

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL,
        id="reconcile",
        registry=registry,
        cancellation_timeout=10.0,
        when=lambda meta, **_: not meta.get("deletionTimestamp"),
    )
    async def reconcile(**kwargs: Any) -> None:
        body: kopf.Body = kwargs["body"]
        stopped: kopf.DaemonStopped = kwargs["stopped"]
        logger: logging.Logger = kwargs["logger"]
        key = (kwargs["namespace"], kwargs["name"])
        event = wakeups.events.setdefault(key, asyncio.Event())
        first, failures = True, 0
        try:
            while not stopped:
                event.clear()
                snapshot = copy.deepcopy(dict(body))
                if (snapshot.get("metadata") or {}).get("deletionTimestamp"):
                    return
                try:
                    outcome = await reconciler.reconcile(snapshot, prune=first)
                except Exception as exc:  # a pass failed half-way: the next one starts from fresh reads
                    failures += 1
                    delay = min(30.0, config.requeue_seconds * 2 ** min(failures, 5))
                    logger.warning(
                        f"reconcile pass failed ({type(exc).__name__}: {exc}); retrying in {delay:.0f}s"
                    )
                    await _sleep(event, stopped, delay)
                    continue
                first, failures = False, 0
                if outcome.waiting_for_nodes:
                    wakeups.waiting_for_nodes.add(key)
                else:
                    wakeups.waiting_for_nodes.discard(key)
                await _sleep(event, stopped, outcome.requeue)
        finally:
            if wakeups.events.get(key) is event:
                del wakeups.events[key]
            wakeups.waiting_for_nodes.discard(key)

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="release-nodes", registry=registry)
    async def release(**kwargs: Any) -> None:
        await reconciler.release(kwargs["name"], kwargs["namespace"])
        kwargs["logger"].info(f"released the nodes of Workspace {kwargs['namespace']}/{kwargs['name']}")

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def workspace_changed(**kwargs: Any) -> None:
        log.debug("workspace event %s %s/%s", kwargs["type"], kwargs["namespace"], kwargs["name"])
        wakeups.wake(kwargs["namespace"], kwargs["name"])

    async def child_changed(**kwargs: Any) -> None:
        wakeups.wake(kwargs["namespace"], kwargs["labels"].get(WORKSPACE_LABEL))

    present = {WORKSPACE_LABEL: kopf.PRESENT}
    kopf.on.event("apps", "v1", "deployments", labels=present, registry=registry)(child_changed)
    kopf.on.event("apps", "v1", "statefulsets", labels=present, registry=registry, id="sts")(child_changed)
    kopf.on.event("", "v1", "pods", labels=present, registry=registry, id="pods")(child_changed)
    kopf.on.event("batch", "v1", "jobs", labels=present, registry=registry, id="jobs")(child_changed)

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_changed(**_: Any) -> None:
        wakeups.wake_node_waiters()

    if config.writes_nodeclaims:
        # A claim's conditions (Launched, Registered, Initialized, Ready) move the Workspace on.
        @kopf.on.event(NC_GROUP, NC_VERSION, NC_PLURAL, labels=present, registry=registry, id="nodeclaims")
        async def nodeclaim_changed(**kwargs: Any) -> None:
            labels = kwargs["labels"]
            wakeups.wake(labels.get(WORKSPACE_NAMESPACE_LABEL), labels.get(WORKSPACE_LABEL))

    if config.webhook_port is not None:

        @kopf.on.validate(
            GROUP, VERSION, PLURAL, id="workspace", registry=registry, operations=["CREATE", "UPDATE"]
        )
        def validate(**kwargs: Any) -> None:
            old: Mapping[str, Any] | None = kwargs.get("old")
            errors, notes = admission_problems(
                dict(kwargs["body"]), dict(old) if old else None, plugins, config.provisioner,
                reconciler.kube.list_nodes,
            )
            kwargs["warnings"].extend(notes)
            if errors:
                raise kopf.AdmissionError("; ".join(errors), code=422)

    return registry
