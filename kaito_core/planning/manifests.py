"""The Kubernetes objects that serve a Workspace, built from its Plan. Pure: no I/O.

For a preset: a ConfigMap with the runtime parameters, a Deployment (one node) or StatefulSets with a
headless Service (several nodes: the leader's and the workers'; one node with a PVC), and a Service
named after the Workspace (port 80 to the serving
port; ``kaito.sh/enablelb: "True"`` makes it a LoadBalancer). The pod pulls the weights (and each
adapter) with ``kaito model pull`` in init containers into shared volumes, then runs the runtime
plugin's container under the restricted Pod Security profile. For a custom ``inference.template``:
the template as the user wrote it, in a Deployment, with the Service.

Every object carries the ``kaito.sh/workspace`` label, an ownerReference to the Workspace and a hash
of its own content (``kaito.sh/manifest-hash``), which lets the operator write only what changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from kaito_core.planning import volumes
from kaito_core.planning.images import ImageSettings
from kaito_core.planning.labels import (
    CONFIG_FILE,
    ENABLE_LB_ANNOTATION,
    MANIFEST_HASH_ANNOTATION,
    REVISION_ANNOTATION,
    WORKSPACE_LABEL,
    config_map_name,
    content_hash,
)
from kaito_core.planning.pod import LEADER, ROLE_LABEL, WORKER, pod_template, weights_volume_size
from kaito_core.plugins import ADAPTER_DIR, Plan, PlanError

if TYPE_CHECKING:
    from kaito_core.api import Workspace


def spec_hash(ws: Workspace) -> str:
    """KAITO's revision hash: sha256 of the JSON of resource, inference and tuning."""
    manifest = ws.to_manifest()
    return content_hash({key: manifest.get(key) for key in ("resource", "inference", "tuning")})


# ------------------------------------------------------------------------------------------ metadata


def owner_reference(ws: Workspace) -> dict[str, Any]:
    if not ws.metadata.uid:
        raise PlanError("the Workspace has no metadata.uid yet; children need it for their ownerReference")
    return {
        "apiVersion": ws.api_version,
        "kind": "Workspace",
        "name": ws.name,
        "uid": ws.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ws: Workspace, name: str, revision: str | None = None) -> dict[str, Any]:
    """``revision`` (the Workspace spec hash) goes on workloads only: a Service or ConfigMap whose own
    content did not change is not rewritten because some other part of the spec did."""
    return {
        "name": name,
        "namespace": ws.namespace,
        "labels": {WORKSPACE_LABEL: ws.name},
        "annotations": {REVISION_ANNOTATION: revision} if revision else {},
        "ownerReferences": [owner_reference(ws)],
    }


def seal(obj: dict[str, Any]) -> dict[str, Any]:
    """Record the hash of the object's desired content in an annotation (computed without it)."""
    unsealed = copy.deepcopy(obj)
    unsealed["metadata"].setdefault("annotations", {}).pop(MANIFEST_HASH_ANNOTATION, None)
    unsealed["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION] = content_hash(unsealed)
    return unsealed


# ------------------------------------------------------------------------------------------ objects


def inference_config(plan: Plan) -> dict[str, Any]:
    """What the runtime reads from /mnt/config/inference_config.yaml."""
    return {
        "runtime": plan.runtime,
        "preset": plan.preset,
        "max_model_len": plan.context_length,
        "served_model_name": plan.served_model_name or plan.preset,
        "tensor_parallel_size": plan.tensor_parallel,
        "pipeline_parallel_size": plan.pipeline_parallel,
        "gpu_memory_utilization": plan.gpu_memory_utilization,
        "runtime_options": dict(plan.runtime_options),
        "adapters": [
            {"name": a.name, "path": f"{ADAPTER_DIR}/{a.name}", "strength": a.strength} for a in plan.adapters
        ],
    }


def config_map(ws: Workspace, plan: Plan) -> dict[str, Any]:
    data = yaml.safe_dump(inference_config(plan), sort_keys=True, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ws, config_map_name(ws)),
        "data": {CONFIG_FILE: data},
    }


def service(ws: Workspace, target_port: int | str, statefulset: bool) -> dict[str, Any]:
    load_balancer = ws.annotations.get(ENABLE_LB_ANNOTATION) == "True"
    selector = {WORKSPACE_LABEL: ws.name}
    if statefulset:  # the leader (pod 0) serves; the others are its pipeline-parallel workers
        selector["statefulset.kubernetes.io/pod-name"] = f"{ws.name}-0"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ws, ws.name),
        "spec": {
            "type": "LoadBalancer" if load_balancer else "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": target_port, "protocol": "TCP"}],
        },
    }


def headless_service(ws: Workspace, plan: Plan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ws, f"{ws.name}-headless"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {WORKSPACE_LABEL: ws.name},
            "ports": [{"name": "http", "port": plan.port, "targetPort": plan.port, "protocol": "TCP"}],
        },
    }


def worker_name(ws: Workspace) -> str:
    """The StatefulSet of a multi-node Workspace's workers (the leader's is named after the Workspace)."""
    return f"{ws.name}-worker"


def _statefulset(
    ws: Workspace, plan: Plan, name: str, replicas: int, template: dict[str, Any], settings: ImageSettings,
    revision: str, selector: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "replicas": replicas,
        "podManagementPolicy": "Parallel",
        "serviceName": f"{ws.name}-headless",
        "selector": selector,
        "template": template,
    }
    if settings.weights_volume.persistent:
        spec["volumeClaimTemplates"] = [
            volumes.claim_template(weights_volume_size(plan, settings), settings.weights_volume)
        ]
        # the claims go with the Workspace; a scale-down keeps them for the next scale-up
        spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Delete", "whenScaled": "Retain"}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(ws, name, revision),
        "spec": spec,
    }


def inference_manifests(
    ws: Workspace,
    plan: Plan,
    container: Mapping[str, Any],
    settings: ImageSettings | None = None,
    worker: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every object serving a preset Workspace, sealed, in the order to apply them.

    One node: a Deployment (a StatefulSet of one with ``--weights-volume pvc``, so the pod has a claim
    of its own). Several: the leader's StatefulSet (pod ``<name>-0``, which serves) and the workers'
    (``worker``: the runtime's worker container), each pod with its role's probes."""
    settings = settings or ImageSettings()
    revision = spec_hash(ws)
    config = config_map(ws, plan)
    config_hash = content_hash(config["data"])
    labels = {WORKSPACE_LABEL: ws.name}
    objects: list[dict[str, Any]] = [config]
    statefulset = plan.node_count > 1 or settings.weights_volume.persistent
    if plan.node_count > 1:
        if worker is None:
            raise PlanError(
                f"runtime {plan.runtime!r} cannot serve over {plan.node_count} nodes (it has no worker "
                "container); choose a larger instance type or another runtime"
            )
        leader = pod_template(ws, plan, container, settings, config_hash, role=LEADER)
        workers = pod_template(ws, plan, worker, settings, config_hash, role=WORKER)
        objects.append(headless_service(ws, plan))
        objects.append(_statefulset(
            ws, plan, ws.name, 1, leader, settings, revision,
            {"matchLabels": {**labels, ROLE_LABEL: LEADER}},
        ))  # fmt: skip
        objects.append(_statefulset(
            ws, plan, worker_name(ws), plan.node_count - 1, workers, settings, revision,
            {"matchLabels": {**labels, ROLE_LABEL: WORKER}},
        ))  # fmt: skip
    elif statefulset:
        template = pod_template(ws, plan, container, settings, config_hash)
        objects.append(headless_service(ws, plan))
        selector = {"matchLabels": labels}
        objects.append(_statefulset(ws, plan, ws.name, 1, template, settings, revision, selector))
    else:
        template = pod_template(ws, plan, container, settings, config_hash)
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _metadata(ws, ws.name, revision),
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "strategy": {"type": "Recreate"},
                    "template": template,
                },
            }
        )
    objects.append(service(ws, plan.port, statefulset=statefulset))
    return [seal(obj) for obj in objects]


def template_manifests(ws: Workspace) -> list[dict[str, Any]]:
    """A custom ``inference.template``: the user's pod template in a Deployment, with the Service."""
    if ws.inference is None or ws.inference.template is None:
        raise PlanError("inference.template is not set")
    revision = spec_hash(ws)
    template = copy.deepcopy(ws.inference.template)
    template.setdefault("metadata", {}).setdefault("labels", {})[WORKSPACE_LABEL] = ws.name
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise PlanError("inference.template.spec.containers must list at least one container")
    ports = [p for c in containers for p in (c.get("ports") or [])]
    target: int | str = ports[0]["containerPort"] if ports else 5000
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(ws, ws.name, revision),
        "spec": {
            "replicas": ws.resource.count,
            "selector": {"matchLabels": {WORKSPACE_LABEL: ws.name}},
            "template": template,
        },
    }
    return [seal(deployment), seal(service(ws, target, statefulset=False))]
