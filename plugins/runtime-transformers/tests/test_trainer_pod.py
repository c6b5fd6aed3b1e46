"""The tuning Job's pod, as the operator plans it, run by a real container runtime (podman) as the
kubelet would run it: the ``kaito`` image pulls the base weights and the data from the registry onto
the pod's one pull volume, the ``kaito-runtime-transformers-cpu`` image (built by ``nox -s images``)
runs ``kaito tune`` as the pod's non-root user with the user's training ConfigMap, and the ``kaito``
image pushes the adapter with the push secret; the adapter is then pulled back here and loaded with
peft. Marked slow; ``.ci/run`` builds and pushes the images first."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kaito_runtime_transformers import plugin
from kaito_runtime_transformers.runtime import CPU_IMAGE
from kaito_runtime_transformers.train import ADAPTER_FILES

from kaito_core import __version__
from kaito_core.api import Workspace
from kaito_core.artifacts import pull, push
from kaito_core.planning.images import ImageSettings
from kaito_core.planning.tuning import tuning_manifests
from kaito_core.plugins import Registry

from .conftest import FAST_CONFIG
from .test_run_tuning import Presets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REGISTRY = os.environ.get("KAITO_TEST_REGISTRY", "")
IMAGES = ("kaito", CPU_IMAGE)
UID = "0f6c3b9e-5d7a-4e2b-9c1d-2a3b4c5d6e7f"  # the API server gives a Workspace its uid


def _skip_reason() -> str | None:
    from kaito_testing import podman

    if not REGISTRY:
        return "KAITO_TEST_REGISTRY is not set (.ci/run starts a registry and sets it)"
    reason = podman.available()
    if reason:
        return reason
    if os.geteuid() != 0:
        return "the kubelet double mounts tmpfs for sized emptyDirs: run as root"
    for name in IMAGES:
        ref = f"docker://{REGISTRY}/{name}:{__version__}"
        found = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", ref], capture_output=True)
        if found.returncode:
            return f"{name} is not in {REGISTRY}: build and push it with `nox -s images -- --push {REGISTRY}`"
    return None


def _workspace(pod_registry: str) -> Workspace:
    return Workspace.model_validate({
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "tune-tiny-pod", "namespace": "default", "uid": UID},
        "resource": {"labelSelector": {"matchLabels": {"app": "tiny"}}},
        "tuning": {
            "preset": {"name": "tiny-llama"},
            "method": "lora",
            "config": "tiny-config",
            "input": {"image": f"{pod_registry}/trainer-pod/data:1"},
            "output": {"image": f"{pod_registry}/trainer-pod/adapter:1", "imagePushSecret": "push"},
        },
    })  # fmt: skip


def _wait_exited(pod: Any, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pod.container_state(name) in ("exited", "stopped"):
            return
        time.sleep(1)
    raise AssertionError(f"{name} still {pod.container_state(name)} after {timeout} s")


def test_the_tuning_jobs_pod_trains_and_pushes_under_podman(
    tiny_model: Path, chat_parquet: Path, tmp_path: Path
) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from kaito_testing.podman import HOST_LOOPBACK, PodmanPod

    port = REGISTRY.rsplit(":", 1)[1]
    pod_registry = f"{HOST_LOOPBACK}:{port}"  # the same registry, as the pod reaches it
    push(tiny_model, f"{REGISTRY}/trainer-pod/kaito-tiny-llama:bf16", plain_http=True, progress=False)
    push(chat_parquet.parent, f"{REGISTRY}/trainer-pod/data:1", plain_http=True, progress=False)

    registry = Registry()
    registry.register(Presets(), distribution="tiny-presets", version="0")
    registry.register(plugin, distribution="kaito-runtime-transformers", version="0.1.0")
    settings = ImageSettings(image_registry=REGISTRY, registry_prefix=f"{pod_registry}/trainer-pod",
                             plain_http=True)  # fmt: skip
    [job] = tuning_manifests(_workspace(pod_registry), registry, settings)
    spec = job["spec"]["template"]["spec"]
    steps = {c["name"]: c for c in spec["initContainers"]}
    assert list(steps) == ["model-weights", "data", "trainer"]
    assert steps["trainer"]["image"] == f"{REGISTRY}/{CPU_IMAGE}:{__version__}"  # no GPUs: the CPU build
    [pusher] = spec["containers"]

    auth = base64.b64encode(b"kaito:unused").decode()
    docker_config = json.dumps({"auths": {pod_registry: {"auth": auth}}})
    pod = PodmanPod(
        spec,
        config_maps={"tiny-config": {"training_config.yaml": FAST_CONFIG}},
        secrets={"push": {".dockerconfigjson": docker_config}},
        pull="newer",
    )
    with pod:
        pod.start()
        trainer_log = pod.logs["trainer"]
        assert "adapter written" in trainer_log, trainer_log[-3000:]
        losses = [float(m) for m in re.findall(r"step \d+/\d+ loss (\d+\.\d+)", trainer_log)]
        assert len(losses) >= 2 and losses[-1] < losses[0], trainer_log[-3000:]  # it learned
        _wait_exited(pod, pusher["name"], timeout=300)
        pushed = pod.container_logs(pusher["name"])
    assert f"pushed {pod_registry}/trainer-pod/adapter:1@sha256:" in pushed, pushed[-2000:]

    back = tmp_path / "adapter"
    pull(f"{REGISTRY}/trainer-pod/adapter:1", back, plain_http=True, progress=False)
    assert {p.name for p in back.iterdir()} >= set(ADAPTER_FILES)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), back)
    assert model.peft_config["default"].lora_alpha == 16  # the ConfigMap's LoraConfig reached the trainer
