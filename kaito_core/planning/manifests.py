"""The Kubernetes objects that serve a Workspace, built from its Plan. Pure: no I/O.

For a preset: a ConfigMap with the runtime parameters, a Deployment (one node) or a StatefulSet with a
headless Service (several nodes), and a Service named after the Workspace (port 80 to the serving
port; ``kaito.sh/enablelb: "True"`` makes it a LoadBalancer). The pod pulls the weights (and each
adapter) with ``kaito model pull`` in init containers into shared volumes, then runs the runtime
plugin's container under the restricted Pod Security profile. For a custom ``inference.template``:
the template as the user wrote it, in a Deployment, with the Service.

Every object carries the ``kaito.sh/workspace`` label, an ownerReference to the Workspace and a hash
of its own content (``kaito.sh/manifest-hash``), which lets the operator write only what changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from kaito_core.api.names import ARTIFACT_ANNOTATION
from kaito_core.planning.hardware import GPU_RESOURCE
from kaito_core.plugins import ADAPTER_DIR, CONFIG_DIR, GiB, Plan, PlanError

if TYPE_CHECKING:
    from kaito_core.api import Workspace

WORKSPACE_LABEL = "kaito.sh/workspace"
WORKSPACE_NAMESPACE_LABEL = "kaito.sh/workspacenamespace"
ENABLE_LB_ANNOTATION = "kaito.sh/enablelb"
REVISION_ANNOTATION = "kaito.sh/revision"  # hash of the Workspace spec the object was built from
MANIFEST_HASH_ANNOTATION = "kaito.sh/manifest-hash"  # hash of the object's own desired content
CONFIG_HASH_ANNOTATION = "kaito.sh/config-hash"  # on the pod template: a config change rolls the pods
CONFIG_FILE = "inference_config.yaml"
REGISTRY_AUTH_DIR = "/etc/kaito/registry-auth"
GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
#: KAITO: the startup probe allows 15 minutes plus 18 s per GiB of weights, at most 180 minutes.
STARTUP_BASE_S, STARTUP_PER_GIB_S, STARTUP_CAP_S = 15 * 60, 18, 180 * 60
NON_ROOT_UID = 1000
#: KAITO_HOME of the pullers (their blob cache), an emptyDir of its own
PULL_CACHE_DIR = "/var/cache/kaito"


@dataclass(frozen=True)
class ImageSettings:
    """Operator configuration that reaches the manifests."""

    #: an image with the ``kaito`` command (kaito-core installed), for the weight-pulling init container
    puller_image: str = "ghcr.io/kaito-python/kaito:0.1.0"
    #: where preset artifacts live: the weights reference is ``<prefix>/kaito-<preset>:<tag>``
    registry_prefix: str = ""
    #: the artifact tag; empty means the Plan's quantization, lower-cased (``q4_k_m``, ``bf16``)
    weights_tag: str = ""
    #: pass --plain-http to ``kaito model pull`` (a registry without TLS, e.g. inside the cluster)
    plain_http: bool = False


# ------------------------------------------------------------------------------------------ hashes


def content_hash(value: Any) -> str:
    """A stable sha256 of JSON-able content (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def spec_hash(ws: Workspace) -> str:
    """KAITO's revision hash: sha256 of the JSON of resource, inference and tuning."""
    manifest = ws.to_manifest()
    return content_hash({key: manifest.get(key) for key in ("resource", "inference", "tuning")})


def startup_timeout_seconds(weights_bytes: int) -> int:
    return min(STARTUP_CAP_S, STARTUP_BASE_S + math.ceil(STARTUP_PER_GIB_S * weights_bytes / GiB))


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


# ------------------------------------------------------------------------------------------ weights


def weights_reference(ws: Workspace, plan: Plan, settings: ImageSettings) -> str:
    """Where the init container pulls the weights from."""
    if plan.artifact:
        return plan.artifact
    annotated = ws.annotations.get(ARTIFACT_ANNOTATION)
    if annotated:
        return annotated
    if not settings.registry_prefix:
        raise PlanError(
            f"no registry for the weights of preset {plan.preset!r}: start the operator with "
            f"--registry-prefix (weights are <prefix>/kaito-{plan.preset}:<tag>) or annotate the Workspace "
            f"with {ARTIFACT_ANNOTATION}: <reference>"
        )
    tag = settings.weights_tag or plan.quantization.lower()
    return f"{settings.registry_prefix.rstrip('/')}/kaito-{plan.preset}:{tag}"


# ------------------------------------------------------------------------------------------ pod parts


def _restricted_container_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "fsGroup": NON_ROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def node_affinity(ws: Workspace) -> dict[str, Any]:
    """The Workspace's labelSelector as a required node affinity."""
    selector = ws.resource.label_selector
    expressions: list[dict[str, Any]] = [
        {"key": key, "operator": "In", "values": [value]}
        for key, value in sorted(selector.match_labels.items())
    ]
    for requirement in selector.match_expressions:
        expression: dict[str, Any] = {"key": requirement.key, "operator": requirement.operator}
        if requirement.operator in ("In", "NotIn"):
            expression["values"] = list(requirement.values)
        expressions.append(expression)
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }


def _secret_volume_name(secret: str) -> str:
    return f"registry-auth-{content_hash(secret)[:10]}"


def _registry_args(secrets: Sequence[str]) -> list[str]:
    args: list[str] = []
    for secret in secrets:
        args += ["--registry-config", f"{REGISTRY_AUTH_DIR}/{secret}/.dockerconfigjson"]
    return args


def _puller(
    name: str, reference: str, target: str, mount: str, secrets: Sequence[str], settings: ImageSettings
) -> dict[str, Any]:
    args = ["model", "pull", reference, target, *_registry_args(secrets)]
    if settings.plain_http:
        args.append("--plain-http")
    return {
        "name": name,
        "image": settings.puller_image,
        "command": ["kaito"],
        "args": args,
        "volumeMounts": [
            {"name": mount, "mountPath": target.rsplit("/", 1)[0] if mount == "adapters" else target},
            {"name": "pull-cache", "mountPath": PULL_CACHE_DIR},
            *(
                {"name": _secret_volume_name(s), "mountPath": f"{REGISTRY_AUTH_DIR}/{s}", "readOnly": True}
                for s in secrets
            ),
        ],
        "env": [{"name": "KAITO_HOME", "value": PULL_CACHE_DIR}],  # the pull cache, on its own volume
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": {**_restricted_container_context(), "readOnlyRootFilesystem": True},
    }


def _probe_defaults(container: dict[str, Any], plan: Plan) -> None:
    health = {"path": "/health", "port": plan.port}
    startup = dict(container.get("startupProbe") or {"httpGet": health, "periodSeconds": 10})
    startup.setdefault("httpGet", health)
    period = int(startup.get("periodSeconds", 10))
    startup["failureThreshold"] = math.ceil(startup_timeout_seconds(plan.weights_bytes) / period)
    container["startupProbe"] = startup
    container.setdefault(
        "readinessProbe",
        {"httpGet": health, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 3},
    )
    container.setdefault("livenessProbe", {"httpGet": health, "periodSeconds": 10, "failureThreshold": 6})


def _serving_container(container: Mapping[str, Any], ws: Workspace, plan: Plan) -> dict[str, Any]:
    main = copy.deepcopy(dict(container))
    mounts = list(main.get("volumeMounts") or [])
    taken = {m.get("mountPath") for m in mounts}
    for mount in (
        {"name": "weights", "mountPath": plan.model_dir, "readOnly": True},
        {"name": "adapters", "mountPath": ADAPTER_DIR, "readOnly": True},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 (a path in the pod, not a host temp file)
    ):
        if mount["mountPath"] not in taken and (mount["name"] != "adapters" or plan.adapters):
            mounts.append(mount)
    main["volumeMounts"] = mounts
    env = list(main.get("env") or [])
    if plan.model_access_secret and not any(e.get("name") == "HF_TOKEN" for e in env):
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": plan.model_access_secret, "key": "HF_TOKEN"}},
            }
        )
    if plan.node_count > 1:
        env += [
            {"name": "KAITO_NODE_COUNT", "value": str(plan.node_count)},
            {
                "name": "KAITO_LEADER_ADDRESS",
                "value": f"{ws.name}-0.{ws.name}-headless.{ws.namespace}.svc.cluster.local",
            },
            {
                "name": "KAITO_POD_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
            },
        ]
    if env:
        main["env"] = env
    resources = copy.deepcopy(main.get("resources") or {})
    if plan.gpus_per_node:
        gpus = str(plan.resources.gpu or plan.gpus_per_node)
        resources.setdefault("limits", {})[GPU_RESOURCE] = gpus
        resources.setdefault("requests", {})[GPU_RESOURCE] = gpus
    main["resources"] = {k: v for k, v in resources.items() if v}
    _probe_defaults(main, plan)
    context = dict(main.get("securityContext") or {})
    context.update(_restricted_container_context())
    main["securityContext"] = context
    main.setdefault("ports", [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}])
    return main


def _pod_template(
    ws: Workspace, plan: Plan, container: Mapping[str, Any], settings: ImageSettings, config_hash: str
) -> dict[str, Any]:
    preset_secrets: list[str] = []
    if ws.inference and ws.inference.preset and ws.inference.preset.preset_options:
        preset_secrets = list(ws.inference.preset.preset_options.image_pull_secrets)
    init = [
        _puller(
            "model-weights",
            weights_reference(ws, plan, settings),
            plan.model_dir,
            "weights",
            preset_secrets,
            settings,
        )
    ]
    secrets = list(dict.fromkeys(preset_secrets))
    for adapter in plan.adapters:
        if not adapter.image:
            raise PlanError(f"adapter {adapter.name!r} has no image; adapters are pulled from a registry")
        init.append(
            _puller(
                f"adapter-{adapter.name}",
                adapter.image,
                f"{ADAPTER_DIR}/{adapter.name}",
                "adapters",
                adapter.image_pull_secrets,
                settings,
            )
        )
        secrets += [s for s in adapter.image_pull_secrets if s not in secrets]
    volumes: list[dict[str, Any]] = [
        {"name": "weights", "emptyDir": {}},
        {"name": "config", "configMap": {"name": config_map_name(ws)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        {"name": "pull-cache", "emptyDir": {}},
    ]
    if plan.adapters:
        volumes.append({"name": "adapters", "emptyDir": {}})
    volumes += [
        {
            "name": _secret_volume_name(s),
            "secret": {"secretName": s, "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}]},
        }
        for s in secrets
    ]
    spec: dict[str, Any] = {
        "initContainers": init,
        "containers": [_serving_container(container, ws, plan)],
        "volumes": volumes,
        "affinity": node_affinity(ws),
        "tolerations": [dict(GPU_TOLERATION)],
        "securityContext": _pod_security_context(),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
    }
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return {
        "metadata": {
            "labels": {WORKSPACE_LABEL: ws.name},
            "annotations": {CONFIG_HASH_ANNOTATION: config_hash},
        },
        "spec": spec,
    }


# ------------------------------------------------------------------------------------------ objects


def config_map_name(ws: Workspace) -> str:
    return f"{ws.name}-inference-config"


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


def inference_manifests(
    ws: Workspace, plan: Plan, container: Mapping[str, Any], settings: ImageSettings | None = None
) -> list[dict[str, Any]]:
    """Every object serving a preset Workspace, sealed, in the order to apply them."""
    settings = settings or ImageSettings()
    revision = spec_hash(ws)
    config = config_map(ws, plan)
    template = _pod_template(ws, plan, container, settings, content_hash(config["data"]))
    selector = {"matchLabels": {WORKSPACE_LABEL: ws.name}}
    objects: list[dict[str, Any]] = [config]
    if plan.node_count > 1:
        objects.append(headless_service(ws, plan))
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": _metadata(ws, ws.name, revision),
                "spec": {
                    "replicas": plan.node_count,
                    "podManagementPolicy": "Parallel",
                    "serviceName": f"{ws.name}-headless",
                    "selector": selector,
                    "template": template,
                },
            }
        )
    else:
        objects.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": _metadata(ws, ws.name, revision),
                "spec": {
                    "replicas": 1,
                    "selector": selector,
                    "strategy": {"type": "Recreate"},
                    "template": template,
                },
            }
        )
    objects.append(service(ws, plan.port, statefulset=plan.node_count > 1))
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
