"""The pod that serves a preset Workspace: init containers that pull the weights (and each adapter) with
``kaito model pull`` into shared volumes, then the runtime plugin's container with its mounts, probes,
GPU request and the restricted Pod Security profile. Pure: no I/O.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kaito_core.api.names import ARTIFACT_ANNOTATION
from kaito_core.planning.hardware import GPU_RESOURCE
from kaito_core.planning.labels import CONFIG_HASH_ANNOTATION, WORKSPACE_LABEL, config_map_name, content_hash
from kaito_core.plugins import ADAPTER_DIR, CONFIG_DIR, GiB, Plan, PlanError

if TYPE_CHECKING:
    from kaito_core.api import Workspace

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


def startup_timeout_seconds(weights_bytes: int) -> int:
    return min(STARTUP_CAP_S, STARTUP_BASE_S + math.ceil(STARTUP_PER_GIB_S * weights_bytes / GiB))


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
    """The Workspace's labelSelector as a required node affinity; resource.preferredNodes preferred."""
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
    affinity: dict[str, Any] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": expressions}]
        }
    }
    if ws.resource.preferred_nodes:  # among the selected nodes, these first
        names = list(dict.fromkeys(ws.resource.preferred_nodes))
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": names}]}}
        ]  # fmt: skip
    return {"nodeAffinity": affinity}


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


def pod_template(
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
