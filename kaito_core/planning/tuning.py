"""The Job that tunes a Workspace: its pod and volumes, built from the Workspace. Pure: no I/O.

One Job named after the Workspace (KAITO's), carrying the spec's revision; the operator deletes and
recreates it when the revision changes (a Job's pod template is immutable). Its pod:

1. ``model-weights``: ``kaito model pull`` of the base model's safetensors artifact into the pod's one
   pull volume (the reference as for inference: the model-artifact annotation, else the registry
   prefix); as for inference (``kaito_core.planning.volumes``) the blob cache and the files pulled out
   of it share that volume, so every file is a hard link to its verified blob, and the volume's
   ``sizeLimit`` is the preset's disk requirement (a Job's pod is never restarted on the same volume,
   so ``--weights-volume pvc`` does not apply to it);
2. ``data``: ``tuning.input.urls`` fetched by ``kaito data fetch`` (http(s) only; loopback, link-local,
   metadata and private addresses refused, after every redirect and DNS answer; retries), or
   ``tuning.input.image`` pulled by ``kaito model pull``; a ``volumeSource`` is mounted instead;
3. the trainer: ``kaito tune`` of the transformers runtime plugin, with the user's
   ``training_config.yaml`` ConfigMap or the method's defaults, writing the adapter to ``/mnt/results``;
4. with ``output.image``: ``kaito model push`` of the adapter with the ``imagePushSecret`` (the
   trainer is then an init container, so the push runs only after it succeeded); with
   ``output.volumeSource`` the results volume is that volume and the trainer is the last step.

Why the trainer is found as a runtime: KAITO tunes with its transformers runtime only, and so does
kaito; the plugin that registers ``transformers`` ships ``kaito tune`` and its image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kaito_core.api.names import ARTIFACT_ANNOTATION
from kaito_core.planning.images import ImageSettings
from kaito_core.planning.labels import REVISION_ANNOTATION, WORKSPACE_LABEL
from kaito_core.planning.manifests import owner_reference, seal, spec_hash
from kaito_core.planning.pod import (
    GPU_TOLERATION,
    REGISTRY_AUTH_DIR,
    _pod_security_context,
    _restricted_container_context,
    _secret_volume_name,
    node_affinity,
)
from kaito_core.planning.volumes import PULL_ROOT, VOLUME, WeightsVolume, volume_size
from kaito_core.plugins import PlanError, PluginError, Registry

if TYPE_CHECKING:
    from kaito_core.api import Workspace

TRAINER_RUNTIME = "transformers"
WEIGHTS_DIR = "/workspace/weights"
DATA_DIR = "/mnt/data"
#: where the init containers put the weights and the data on the pull volume (sub-paths the trainer mounts)
WEIGHTS_SUBPATH, DATA_SUBPATH = "weights", "data"
PULLED_WEIGHTS, PULLED_DATA = f"{PULL_ROOT}/{WEIGHTS_SUBPATH}", f"{PULL_ROOT}/{DATA_SUBPATH}"
RESULTS_DIR = "/mnt/results"
TRAINING_CONFIG_DIR = "/mnt/config"
TRAINING_CONFIG_FILE = "training_config.yaml"
METRICS_PORT = 5000
#: A Job retries its pod this many times (a preempted node, a flaky download) before it fails.
BACKOFF_LIMIT = 3


def _mount(name: str, path: str, read_only: bool = False) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return mount


def _secret_mounts(secrets: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    mounts = [_mount(_secret_volume_name(s), f"{REGISTRY_AUTH_DIR}/{s}", True) for s in secrets]
    args: list[str] = []
    for secret in secrets:
        args += ["--registry-config", f"{REGISTRY_AUTH_DIR}/{secret}/.dockerconfigjson"]
    return mounts, args


def _step(name: str, image: str, args: list[str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": ["kaito"],
        "args": args,
        "env": [{"name": "KAITO_HOME", "value": PULL_ROOT}],
        "volumeMounts": [*mounts, _mount(VOLUME, PULL_ROOT)],
        # the trainer's last error reaches the Job's pod status, and from there the Workspace status
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": {**_restricted_container_context(), "readOnlyRootFilesystem": True},
    }


def weights_reference(ws: Workspace, preset: str, settings: ImageSettings) -> str:
    annotated = ws.annotations.get(ARTIFACT_ANNOTATION)
    if annotated:
        return annotated
    if not settings.registry_prefix:
        raise PlanError(
            f"no registry for the weights of preset {preset!r}: start the operator with --registry-prefix "
            f"(weights are <prefix>/kaito-{preset}:<tag>) or annotate the Workspace with "
            f"{ARTIFACT_ANNOTATION}: <reference>"
        )
    return f"{settings.registry_prefix.rstrip('/')}/kaito-{preset}:{settings.weights_tag or 'bf16'}"


def tuning_manifests(ws: Workspace, registry: Registry, settings: ImageSettings) -> list[dict[str, Any]]:
    """The tuning Job of ``ws`` (a list, as the inference builders return, for ``_apply``)."""
    tuning = ws.tuning
    if tuning is None or tuning.preset is None or tuning.input is None or tuning.output is None:
        raise PlanError("a tuning Workspace needs tuning.preset, tuning.input and tuning.output")
    try:
        preset = registry.preset(tuning.preset.name)
        trainer = registry.runtime(TRAINER_RUNTIME)
    except PluginError as exc:
        raise PlanError(f"{exc} (tuning runs `kaito tune` of kaito-runtime-transformers)") from exc
    if preset.tuning is None:
        raise PlanError(f"preset {preset.name} does not support tuning")
    method = tuning.method or "lora"
    pull = ["--plain-http"] if settings.plain_http else []
    safetensors = preset.format_for("safetensors")
    weights_bytes = safetensors.total_bytes if safetensors else 0
    sized = WeightsVolume(size=settings.weights_volume.size)  # a Job gets an emptyDir, never a PVC
    size = volume_size(preset.requirements.disk, weights_bytes, sized)
    volumes: list[dict[str, Any]] = [{"name": VOLUME, "emptyDir": {"sizeLimit": size}}]
    init: list[dict[str, Any]] = []

    model_secrets = list(
        tuning.preset.preset_options.image_pull_secrets if tuning.preset.preset_options else []
    )
    mounts, auth = _secret_mounts(model_secrets)
    init.append(
        _step(
            "model-weights",
            settings.puller_image,
            ["model", "pull", weights_reference(ws, preset.name, settings), PULLED_WEIGHTS, *auth, *pull],
            mounts,
        )
    )
    secrets = set(model_secrets)

    source = tuning.input
    data_mount = {"name": VOLUME, "mountPath": DATA_DIR, "subPath": DATA_SUBPATH, "readOnly": True}
    if source.volume_source is not None:
        volumes.append({"name": "data", **source.volume_source})
        data_mount = _mount("data", DATA_DIR, True)
    else:
        if source.urls:
            init.append(
                _step(
                    "data",
                    settings.puller_image,
                    ["data", "fetch", "--dest", PULLED_DATA, *source.urls],
                    [],
                )
            )
        elif source.image:
            mounts, auth = _secret_mounts(list(source.image_pull_secrets))
            secrets |= set(source.image_pull_secrets)
            init.append(
                _step(
                    "data",
                    settings.puller_image,
                    ["model", "pull", source.image, PULLED_DATA, *auth, *pull],
                    mounts,
                )
            )
        else:
            raise PlanError("tuning.input: exactly one of urls, image or volumeSource must be specified")

    args = [
        "tune",
        "--model",
        WEIGHTS_DIR,
        "--data",
        DATA_DIR,
        "--method",
        method,
        "--output",
        RESULTS_DIR,
        "--metrics-port",
        str(METRICS_PORT),
    ]
    trainer_mounts = [
        {"name": VOLUME, "mountPath": WEIGHTS_DIR, "subPath": WEIGHTS_SUBPATH, "readOnly": True},
        data_mount,
        _mount("results", RESULTS_DIR),
    ]
    if tuning.config:
        volumes.append({"name": "training-config", "configMap": {"name": tuning.config}})
        trainer_mounts.append(_mount("training-config", TRAINING_CONFIG_DIR, True))
        args += ["--config", f"{TRAINING_CONFIG_DIR}/{TRAINING_CONFIG_FILE}"]
    gpus = preset.requirements.gpu_count
    # a trainer runtime may build for the CPU and for GPUs (Runtime: ``trainer_image``)
    pick = getattr(trainer, "trainer_image", None)
    train = _step("trainer", settings.resolve(pick(gpus) if pick else trainer.image), args, trainer_mounts)
    train["securityContext"]["readOnlyRootFilesystem"] = False  # torch and triton write caches
    train["env"] += [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "HOME", "value": "/tmp"}]  # noqa: S108
    train["resources"] = {"requests": {}, "limits": {}}
    if gpus:
        train["resources"] = {
            "requests": {"nvidia.com/gpu": str(gpus)},
            "limits": {"nvidia.com/gpu": str(gpus)},
        }
    train["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]

    output = tuning.output
    if output.volume_source is not None:
        volumes.append({"name": "results", **output.volume_source})
        containers = [train]
    elif output.image:
        volumes.append({"name": "results", "emptyDir": {}})
        push_secrets = [output.image_push_secret] if output.image_push_secret else []
        mounts, auth = _secret_mounts(push_secrets)
        secrets |= set(push_secrets)
        pusher = _step(
            "pusher",
            settings.puller_image,
            ["model", "push", RESULTS_DIR, output.image, "--no-progress", *auth, *pull],
            [_mount("results", RESULTS_DIR, True), *mounts],
        )
        init.append(train)
        containers = [pusher]
    else:
        raise PlanError("tuning.output: an image (with imagePushSecret) or a volumeSource is required")

    for secret in sorted(secrets):
        volumes.append(
            {
                "name": _secret_volume_name(secret),
                "secret": {
                    "secretName": secret,
                    "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}],
                },
            }
        )

    revision = spec_hash(ws)
    labels = {WORKSPACE_LABEL: ws.name}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": ws.name,
            "namespace": ws.namespace,
            "labels": dict(labels),
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [owner_reference(ws)],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "restartPolicy": "Never",
                    "affinity": node_affinity(ws),
                    "tolerations": [GPU_TOLERATION] if gpus else [],
                    "securityContext": _pod_security_context(),
                    "automountServiceAccountToken": False,
                    "initContainers": init,
                    "containers": containers,
                    "volumes": volumes,
                },
            },
        },
    }
    return [seal(job)]
