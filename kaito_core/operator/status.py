"""Workspace status: conditions, state and failure reasons, from what the API server shows. Pure.

Condition types are KAITO's: ResourceReady, InferenceReady, WorkspaceSucceeded, WorkspaceReady (the
v1alpha1 printer column), JobStarted (tuning). A condition keeps its lastTransitionTime while its
status stays the same, so an unchanged Workspace produces an identical status (and no write).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

RESOURCE_READY = "ResourceReady"
INFERENCE_READY = "InferenceReady"
JOB_STARTED = "JobStarted"
WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"
WORKSPACE_READY = "WorkspaceReady"

_IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


@dataclass(frozen=True)
class Check:
    """One condition's verdict."""

    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str
    failed: bool = False  # needs a person or a spec change, not more waiting (state Failed)

    @property
    def ok(self) -> bool:
        return self.status == "True"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, check: Check, generation: int | None, previous: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    old = next((c for c in previous if c.get("type") == type_), None)
    changed = old is None or old.get("status") != check.status
    result: dict[str, Any] = {
        "type": type_,
        "status": check.status,
        "reason": check.reason,
        "message": check.message,
        "lastTransitionTime": _now()
        if changed or not old or not old.get("lastTransitionTime")
        else old["lastTransitionTime"],
    }
    if generation is not None:
        result["observedGeneration"] = generation
    return result


# ------------------------------------------------------------------------------------------ nodes


def node_is_ready(node: Mapping[str, Any], need_gpu: bool) -> bool:
    """Ready=True, and a positive nvidia.com/gpu capacity when GPUs are needed (the device plugin is up)."""
    status = node.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not ready:
        return False
    if need_gpu:
        try:
            return int(str((status.get("capacity") or {}).get("nvidia.com/gpu", "0"))) > 0
        except ValueError:
            return False
    return True


# ------------------------------------------------------------------------------------------ workloads


def workload_check(workload: Mapping[str, Any] | None) -> Check:
    if workload is None:
        return Check("False", "WorkloadMissing", "the inference workload has not been created yet")
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0)
    generation = int((workload.get("metadata") or {}).get("generation") or 0)
    kind, name = workload.get("kind", "workload"), (workload.get("metadata") or {}).get("name", "")
    if (
        observed >= generation
        and ready >= wanted
        and int(status.get("updatedReplicas", ready) or 0) >= wanted
    ):
        return Check("True", "InferenceReady", f"{kind} {name}: {ready}/{wanted} replicas ready")
    return Check("False", "WorkloadNotReady", f"{kind} {name}: {ready}/{wanted} replicas ready")


def pod_failure(pods: Sequence[Mapping[str, Any]]) -> Check | None:
    """The first failure KAITO classifies: image pull, crash loop, OOM kill, eviction, unschedulable."""
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        if status.get("reason") == "Evicted":
            return Check(
                "False", "PodEvicted", f"pod {name} was evicted: {status.get('message', '')}".strip(), True
            )
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for container in statuses:
            state = container.get("state") or {}
            waiting = state.get("waiting") or {}
            where = f"pod {name} container {container.get('name', '')}"
            if waiting.get("reason") in _IMAGE_PULL:
                return Check(
                    "False",
                    "ImagePullError",
                    f"{where}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": "),
                    True,
                )
            last = (container.get("lastState") or {}).get("terminated") or state.get("terminated") or {}
            if last.get("reason") == "OOMKilled":
                return Check(
                    "False",
                    "ContainerOOMKilled",
                    f"{where} was OOM killed (exit {last.get('exitCode')})",
                    True,
                )
            if waiting.get("reason") == "CrashLoopBackOff":
                return Check(
                    "False",
                    "ContainerCrashLoopBackOff",
                    f"{where}: CrashLoopBackOff: {waiting.get('message', '')}".rstrip(": "),
                    True,
                )
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                return Check(
                    "False", "Unschedulable", f"pod {name}: {cond.get('message', '')}".rstrip(": "), True
                )
    return None


# ------------------------------------------------------------------------------------------ status


def build_status(
    current: Mapping[str, Any] | None,
    *,
    generation: int | None,
    resource: Check,
    inference: Check | None,
    job: Check | None = None,
    worker_nodes: Sequence[str] = (),
    target_node_count: int | None = None,
    outcome: Check | None = None,
) -> dict[str, Any]:
    """The full status the operator owns; other keys of ``current`` are kept as they are.

    ``outcome`` (tuning): what the Job's own status says; WorkspaceSucceeded follows it, and ``state``
    is Running, Succeeded or Failed once the Job exists."""
    current = current or {}
    previous = list(current.get("conditions") or [])
    work = outcome if outcome is not None else (job if job is not None else inference)
    if resource.ok and work is not None and work.ok:
        succeeded = Check("True", "WorkspaceSucceeded", "the workspace is ready")
    else:
        failing = resource if not resource.ok else (work or resource)
        succeeded = Check("False", failing.reason, failing.message, failing.failed)
    checks: list[tuple[str, Check]] = [(RESOURCE_READY, resource)]
    if inference is not None:
        checks.append((INFERENCE_READY, inference))
    if job is not None:
        checks.append((JOB_STARTED, job))
    checks += [(WORKSPACE_SUCCEEDED, succeeded), (WORKSPACE_READY, succeeded)]
    mine = {t for t, _ in checks}
    conditions = [
        c
        for c in previous
        if c.get("type") not in mine and c.get("type") not in (RESOURCE_READY, INFERENCE_READY, JOB_STARTED)
    ]
    conditions += [condition(t, c, generation, previous) for t, c in checks]
    conditions.sort(key=lambda c: str(c.get("type")))
    failed = any(c.failed for _, c in checks)
    if outcome is not None and job is not None and job.ok and resource.ok:
        state = "Succeeded" if succeeded.ok else ("Failed" if failed else "Running")
    elif succeeded.ok:
        state = "Ready"
    elif failed:
        state = "Failed"
    elif not resource.ok:
        state = "Pending"
    else:
        state = "NotReady"
    status = {
        k: v for k, v in current.items() if k not in ("conditions", "workerNodes", "state", "targetNodeCount")
    }
    status.update({"conditions": conditions, "workerNodes": list(worker_nodes), "state": state})
    if target_node_count is not None:
        status["targetNodeCount"] = target_node_count
    return status


def same_status(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing ``desired`` would change nothing."""
    return dict(current or {}) == dict(desired)
