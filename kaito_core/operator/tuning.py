"""The tuning step of a pass: the Job named after the Workspace, and what its status says. I/O through
the reconciler's ``io``; the verdicts (``job_checks``) are pure.

A Job's pod template is immutable, so a Job built from an older revision of the spec (its
``kaito.sh/revision`` differs) is deleted, with its pods, and created again, as KAITO does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from kaito_core.operator.status import Check
from kaito_core.planning.labels import REVISION_ANNOTATION, WORKSPACE_LABEL

IO = Callable[..., Awaitable[Any]]


def _revision(obj: Mapping[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION)


def trainer_error(pods: Sequence[Mapping[str, Any]]) -> str:
    """The last words of the newest failed step: its termination message (the log tail, since the
    Job's containers use ``FallbackToLogsOnError``), else its reason and exit code."""
    for pod in sorted(
        pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "", reverse=True
    ):
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated and terminated.get("exitCode", 0) != 0:
                message = (terminated.get("message") or "").strip()
                last = message.splitlines()[-1] if message else f"{terminated.get('reason', 'Error')}"
                return f"{container.get('name')}: {last} (exit {terminated.get('exitCode')})"
    return ""


def job_checks(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> tuple[Check, Check]:
    """(JobStarted, the Workspace's outcome) for the Job as the API server shows it."""
    if job is None:
        missing = Check("False", "JobMissing", "the tuning Job has not been created yet")
        return missing, missing
    name = (job.get("metadata") or {}).get("name", "")
    started = Check("True", "JobStarted", f"the tuning Job {name} has been created")
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return started, Check("True", "WorkspaceSucceeded", f"the tuning Job {name} succeeded")
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "JobFailed"
            message = f"the tuning Job {name} failed: {reason}: {condition.get('message') or ''}".rstrip(": ")
            error = trainer_error(pods)
            if error:
                message += f"; {error}"
            return started, Check("False", reason, message, failed=True)
    active = int(status.get("active") or 0)
    return started, Check("False", "JobRunning", f"the tuning Job {name} is running ({active} active pod(s))")


async def tuning_step(io: IO, kube: Any, desired: Mapping[str, Any]) -> tuple[Check, Check, int]:
    """Create the Job, or recreate it for a new revision; returns the checks and the writes made."""
    meta = desired["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    uid = meta["ownerReferences"][0]["uid"]
    wrote = 0
    current = await io(kube.get, "Job", namespace, name)
    if current is not None and not any(
        r.get("uid") == uid for r in (current.get("metadata") or {}).get("ownerReferences") or []
    ):
        refused = Check(
            "False",
            "ManifestFailed",
            f"Job {namespace}/{name} already exists and is not owned by "
            f"Workspace {name}; delete or rename it",
            failed=True,
        )
        return refused, refused, 0
    if current is not None and _revision(current) != _revision(desired):
        await io(kube.delete, "Job", namespace, name, "Background")  # its pods go with it
        wrote += 1
        current = None
    if current is None:
        current = await io(kube.create, dict(desired))
        wrote += 1
    pods: list[dict[str, Any]] = []
    if any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in (current.get("status") or {}).get("conditions") or []
    ):
        pods = await io(
            kube.list_children, "Pod", namespace, f"{WORKSPACE_LABEL}={meta['labels'][WORKSPACE_LABEL]}"
        )
    started, outcome = job_checks(current, pods)
    return started, outcome, wrote
