"""The pod that serves a preset Workspace: init containers that pull the weights (and each adapter) with
``kaito model pull`` into shared volumes, then the runtime plugin's container with its mounts, probes,
GPU request and the restricted Pod Security profile. Pure: no I/O.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kaito_core.api.names import ARTIFACT_ANNOTATION
from kaito_core.planning import volumes
from kaito_core.planning.hardware import GPU_RESOURCE
from kaito_core.planning.images import ImageSettings
from kaito_core.planning.labels import CONFIG_HASH_ANNOTATION, WORKSPACE_LABEL, config_map_name, content_hash
from kaito_core.plugins import ADAPTER_DIR, CONFIG_DIR, GiB, Plan, PlanError

if TYPE_CHECKING:
    from kaito_core.api import Workspace

REGISTRY_AUTH_DIR = "/etc/kaito/registry-auth"
GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
#: KAITO: the startup probe allows 15 minutes plus 18 s per GiB of weights, at most 180 minutes.
STARTUP_BASE_S, STARTUP_PER_GIB_S, STARTUP_CAP_S = 15 * 60, 18, 180 * 60
NON_ROOT_UID = 1000
#: the pod label naming a pod's part in a multi-node Workspace (``leader`` serves, ``worker`` joins it)
ROLE_LABEL = "kaito.sh/role"
LEADER, WORKER = "leader", "worker"


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
    if settings.weights_from == "hub":
        return hub_reference(plan)
    if not settings.registry_prefix:
        raise PlanError(
            f"no registry for the weights of preset {plan.preset!r}: start the operator with "
            f"--registry-prefix (weights are <prefix>/kaito-{plan.preset}:<tag>) or annotate the Workspace "
            f"with {ARTIFACT_ANNOTATION}: <reference>"
        )
    tag = settings.weights_tag or plan.quantization.lower()
    return f"{settings.registry_prefix.rstrip('/')}/kaito-{plan.preset}:{tag}"


def hub_reference(plan: Plan) -> str:
    """``hf://REPO@REVISION`` of the Plan's files, for ``kaito model pull`` in the pod."""
    revision = plan.source_revision
    if not plan.source_repo or not revision or not all(c.isalnum() or c in "._-/" for c in revision):
        raise PlanError(
            f"preset {plan.preset!r} ({plan.quantization}) names no Hugging Face revision of its files "
            f"(its source is {plan.source_repo or '?'}@{revision or '?'}): pack it into a registry "
            "(`kaito model pack --push`) and start the operator with --registry-prefix"
        )
    return f"hf://{plan.source_repo}@{revision}"


def _hub_env(plan: Plan) -> list[dict[str, Any]]:
    """A Hub pull's environment: its cache on the weights volume, the Workspace's token if any."""
    env: list[dict[str, Any]] = [{"name": "HF_HOME", "value": f"{volumes.PULL_ROOT}/huggingface"}]
    if plan.model_access_secret:
        env.append({
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": plan.model_access_secret, "key": "HF_TOKEN"}},
        })
    return env


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


def _adapter_volume_name(adapter: str) -> str:
    return f"adapter-volume-{adapter}"[:63].rstrip("-")


def _secret_volume_name(secret: str) -> str:
    return f"registry-auth-{content_hash(secret)[:10]}"


def _registry_args(secrets: Sequence[str]) -> list[str]:
    args: list[str] = []
    for secret in secrets:
        args += ["--registry-config", f"{REGISTRY_AUTH_DIR}/{secret}/.dockerconfigjson"]
    return args


def _puller(
    name: str,
    reference: str,
    target: str,
    secrets: Sequence[str],
    settings: ImageSettings,
    hub: Plan | None = None,
    adapter: bool = False,
) -> dict[str, Any]:
    """An init container pulling ``reference`` into ``target`` on the weights volume, with the blob
    cache on that volume too (KAITO_HOME): each file is a hard link to its verified blob. ``hub``: the
    Plan whose files it pulls from the Hugging Face Hub. ``adapter``: the reference is a LoRA adapter
    (kaito's artifact, an oras directory or KAITO's adapter image with the files under /data/), and the
    container fails unless adapter_config.json is pulled."""
    env: list[dict[str, Any]] = [{"name": "KAITO_HOME", "value": volumes.PULL_ROOT}]
    if hub is not None:
        args = ["model", "pull", reference, target, *(a for f in hub.files for a in ("--include", f.name))]
        env += _hub_env(hub)
    else:
        args = ["model", "pull", reference, target, *_registry_args(secrets), *(["--adapter"] * adapter)]
        if settings.plain_http:
            args.append("--plain-http")
    return {
        "name": name,
        "image": settings.puller_image,
        "command": ["kaito"],
        "args": args,
        "volumeMounts": [
            volumes.puller_mount(),
            *(
                {"name": _secret_volume_name(s), "mountPath": f"{REGISTRY_AUTH_DIR}/{s}", "readOnly": True}
                for s in secrets
            ),
        ],
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": {**_restricted_container_context(), "readOnlyRootFilesystem": True},
    }


def _probe_defaults(container: dict[str, Any], plan: Plan, role: str | None) -> None:
    """The serving container's probes: /health on the serving port unless the runtime set its own,
    the startup allowance from the weights' size. A worker keeps only the probes its runtime declared
    (it serves no HTTP; e.g. a TCP probe on its Ray port)."""
    if role == WORKER:
        if "startupProbe" in container:
            startup = dict(container["startupProbe"])
            period = int(startup.get("periodSeconds", 10))
            startup["failureThreshold"] = math.ceil(startup_timeout_seconds(plan.weights_bytes) / period)
            container["startupProbe"] = startup
        return
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


def _serving_container(
    container: Mapping[str, Any], ws: Workspace, plan: Plan, settings: ImageSettings, role: str | None
) -> dict[str, Any]:
    main = copy.deepcopy(dict(container))
    main["image"] = settings.resolve(str(main.get("image") or ""))
    mounts = list(main.get("volumeMounts") or [])
    taken = {m.get("mountPath") for m in mounts}
    wanted = [volumes.weights_mount(plan.model_dir)]
    if any(a.image for a in plan.adapters):
        wanted.append(volumes.adapters_mount(ADAPTER_DIR))
    wanted += [  # a volume adapter is mounted where the pulled ones are (KAITO's volume adapters)
        {"name": _adapter_volume_name(a.name), "mountPath": f"{ADAPTER_DIR}/{a.name}", "readOnly": True}
        for a in plan.adapters
        if a.volume is not None
    ]
    wanted += [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 (a path in the pod, not a host temp file)
    ]
    mounts += [m for m in wanted if m["mountPath"] not in taken]
    main["volumeMounts"] = mounts
    env = list(main.get("env") or [])
    if plan.model_access_secret and not any(e.get("name") == "HF_TOKEN" for e in env):
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": plan.model_access_secret, "key": "HF_TOKEN"}},
            }
        )
    if role is not None:
        env += [
            {"name": "KAITO_ROLE", "value": role},
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
    _probe_defaults(main, plan, role)
    context = dict(main.get("securityContext") or {})
    context.update(_restricted_container_context())
    main["securityContext"] = context
    if role != WORKER:
        main.setdefault("ports", [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}])
    return main


def pod_template(
    ws: Workspace,
    plan: Plan,
    container: Mapping[str, Any],
    settings: ImageSettings,
    config_hash: str,
    role: str | None = None,
) -> dict[str, Any]:
    """The pod of a preset Workspace; ``role`` is ``leader`` or ``worker`` in a multi-node one."""
    preset_secrets: list[str] = []
    if ws.inference and ws.inference.preset and ws.inference.preset.preset_options:
        preset_secrets = list(ws.inference.preset.preset_options.image_pull_secrets)
    reference = weights_reference(ws, plan, settings)
    hub = plan if reference.startswith("hf://") else None
    init = [_puller("model-weights", reference, volumes.weights_target(), preset_secrets, settings, hub)]
    secrets = list(dict.fromkeys(preset_secrets))
    for adapter in plan.adapters:
        if adapter.volume is not None:
            continue  # mounted as it is, no puller (below)
        if not adapter.image:
            raise PlanError(f"adapter {adapter.name!r} has neither an image nor a volumeSource")
        init.append(
            _puller(
                f"adapter-{adapter.name}",
                adapter.image,
                volumes.adapter_target(adapter.name),
                adapter.image_pull_secrets,
                settings,
                adapter=True,
            )
        )
        secrets += [s for s in adapter.image_pull_secrets if s not in secrets]
    weights = volumes.pod_volume(weights_volume_size(plan, settings), settings.weights_volume)
    pod_volumes: list[dict[str, Any]] = [
        *([weights] if weights else []),
        {"name": "config", "configMap": {"name": config_map_name(ws)}},
        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
    ]
    pod_volumes += [
        {"name": _adapter_volume_name(a.name), **copy.deepcopy(a.volume)}
        for a in plan.adapters
        if a.volume is not None
    ]
    pod_volumes += [
        {
            "name": _secret_volume_name(s),
            "secret": {"secretName": s, "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}]},
        }
        for s in secrets
    ]
    spec: dict[str, Any] = {
        "initContainers": init,
        "containers": [_serving_container(container, ws, plan, settings, role)],
        "volumes": pod_volumes,
        "affinity": node_affinity(ws),
        "tolerations": [dict(GPU_TOLERATION)],
        "securityContext": _pod_security_context(),
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
    }
    if secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    labels = {WORKSPACE_LABEL: ws.name, **({ROLE_LABEL: role} if role else {})}
    return {
        "metadata": {"labels": labels, "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
        "spec": spec,
    }


def weights_volume_size(plan: Plan, settings: ImageSettings) -> str:
    """The weights volume's size: the preset's disk requirement, unless configured."""
    return volumes.volume_size(plan.disk_bytes, plan.weights_bytes, settings.weights_volume)
