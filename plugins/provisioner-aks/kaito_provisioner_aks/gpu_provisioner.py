"""``kaito gpu-provisioner``: the NodeClaim controller (kopf) over :class:`ClaimReconciler`.

- a daemon per NodeClaim labelled ``kaito.sh/workspace`` moves it through its lifecycle, woken by
  events about it or about any Node, else after the reconciler's delay;
- ``on.delete``: the node and the agent pool go, then kopf removes the finalizer, which is Karpenter's
  ``karpenter.sh/termination`` (so a claim is never gone while its VM still runs).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from typing import Any

import kopf

from kaito_provisioner_aks.claimpool import CLAIM_SELECTOR, FINALIZER
from kaito_provisioner_aks.claims import GROUP, PLURAL, VERSION, ClaimReconciler

log = logging.getLogger("kaito.gpu_provisioner")
ANNOTATION_PREFIX = "gpu-provisioner.kaito.sh"


def build_registry(reconciler: ClaimReconciler) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    events: dict[str, asyncio.Event] = {}
    selector = {CLAIM_SELECTOR: kopf.PRESENT}

    @kopf.daemon(
        GROUP, VERSION, PLURAL, id="lifecycle", labels=selector, registry=registry, cancellation_timeout=10.0,
        when=lambda meta, **_: not meta.get("deletionTimestamp"),
    )  # fmt: skip
    async def lifecycle(**kwargs: Any) -> None:
        body, stopped, name = kwargs["body"], kwargs["stopped"], kwargs["name"]
        event = events.setdefault(name, asyncio.Event())
        failures = 0
        try:
            while not stopped:
                event.clear()
                snapshot = copy.deepcopy(dict(body))
                if (snapshot.get("metadata") or {}).get("deletionTimestamp"):
                    return
                try:
                    delay = await asyncio.to_thread(reconciler.reconcile, snapshot)
                    failures = 0
                except Exception as exc:  # an API error half-way: the next pass starts from fresh reads
                    failures += 1
                    delay = min(60.0, 2.0**failures)
                    kwargs["logger"].warning(f"NodeClaim {name}: {type(exc).__name__}: {exc}")
                if delay:
                    waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())}
                    await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                    for waiter in waiters:
                        waiter.cancel()
                else:
                    await asyncio.sleep(0)  # the claim's own update wakes the next pass with fresh data
        finally:
            if events.get(name) is event:
                del events[name]

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="terminate", labels=selector, registry=registry)
    async def terminate(**kwargs: Any) -> None:
        if not await asyncio.to_thread(reconciler.terminate, dict(kwargs["body"])):
            raise kopf.TemporaryError("waiting for the agent pool to be deleted", delay=2)
        kwargs["logger"].info(f"agent pool {kwargs['name']} deleted")

    @kopf.on.event(GROUP, VERSION, PLURAL, labels=selector, registry=registry)
    async def claim_changed(**kwargs: Any) -> None:
        if (event := events.get(kwargs["name"])) is not None:
            event.set()

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_changed(**_: Any) -> None:
        for event in list(events.values()):
            event.set()

    return registry


def settings(watch_timeout: float = 300.0) -> kopf.OperatorSettings:
    result = kopf.OperatorSettings()
    result.persistence.finalizer = FINALIZER
    result.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    result.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    result.posting.enabled = False  # the claim's conditions carry what happened
    result.watching.server_timeout = watch_timeout
    result.watching.client_timeout = watch_timeout + 30
    result.watching.inactivity_timeout = watch_timeout + 60
    return result


def login_from(api: Any) -> kopf.ConnectionInfo:
    conf = api.configuration
    token = (conf.api_key or {}).get("authorization") or (conf.api_key or {}).get("BearerToken") or ""
    token = token[7:] if token.lower().startswith("bearer ") else token
    return kopf.ConnectionInfo(
        server=conf.host, ca_path=conf.ssl_ca_cert, insecure=not conf.verify_ssl,
        scheme="Bearer" if token else None, token=token or None,
        certificate_path=conf.cert_file, private_key_path=conf.key_file,
    )  # fmt: skip


async def operate(
    api: Any, reconciler: ClaimReconciler, *, stop_flag: Any = None, ready_flag: Any = None,
    liveness: str | None = None, watch_timeout: float = 300.0,
) -> None:  # fmt: skip
    registry = build_registry(reconciler)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        if api.configuration.refresh_api_key_hook is not None:
            api.configuration.refresh_api_key_hook(api.configuration)  # a rotated in-cluster token
        return login_from(api)

    await kopf.operator(
        registry=registry, settings=settings(watch_timeout), standalone=True, clusterwide=True,
        liveness_endpoint=liveness, stop_flag=stop_flag, ready_flag=ready_flag,
    )  # fmt: skip


class ProvisionerThread:
    """The controller in a background thread with its own loop (tests)."""

    def __init__(self, api: Any, reconciler: ClaimReconciler) -> None:
        self.api, self.reconciler = api, reconciler
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gpu-provisioner", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(
                operate(self.api, self.reconciler, stop_flag=self.stop_flag, ready_flag=self.ready_flag,
                        watch_timeout=30.0)
            )  # fmt: skip
        except BaseException as exc:  # reported through .error
            self.error = exc

    def start(self, timeout: float = 30.0) -> ProvisionerThread:
        self.thread.start()
        if not self.ready_flag.wait(timeout):
            raise TimeoutError(f"the gpu-provisioner did not start within {timeout}s: {self.error!r}")
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(30)
