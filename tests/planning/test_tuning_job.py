"""The tuning Job (kaito_core.planning.tuning): its steps, volumes and secrets, valid Kubernetes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from kaito_core.api import Workspace, load_workspaces
from kaito_core.planning.images import ImageSettings
from kaito_core.planning.labels import REVISION_ANNOTATION
from kaito_core.planning.tuning import tuning_manifests
from kaito_core.plugins import GiB, PlanError, Registry, default_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workspace-tuning-phi-3-qlora.yaml"
SETTINGS = ImageSettings(
    overrides={"kaito": "example.com/kaito:1"}, registry_prefix="registry.example.com/models"
)
K8S_VERSION = "1.33.0"


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = default_registry()
    if "transformers" not in registry.runtimes() or "phi-3-mini-4k-instruct" not in registry.presets():
        pytest.skip("kaito-runtime-transformers and kaito-presets-phi3 are not installed")
    return registry


def example(**tuning: Any) -> Workspace:
    manifest = load_workspaces(EXAMPLE.read_text())[0].to_manifest()
    manifest["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001"
    manifest["tuning"].update(tuning)
    return Workspace.model_validate(manifest)


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_the_seed_example_builds_a_valid_job_with_a_pusher(registry: Registry) -> None:
    [job] = tuning_manifests(example(), registry, SETTINGS)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["kind"] == "Job" and job["metadata"]["name"] == "workspace-tuning-phi-3"
    spec = pod(job)
    steps = {c["name"]: c for c in spec["initContainers"]}
    assert list(steps) == ["model-weights", "data", "trainer"]
    assert steps["model-weights"]["args"][:3] == [
        "model",
        "pull",
        "registry.example.com/models/kaito-phi-3-mini-4k-instruct:bf16",
    ]
    assert steps["data"]["args"][:4] == ["data", "fetch", "--dest", "/var/lib/kaito/data"]
    assert steps["data"]["args"][4].startswith(
        "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/"
    )
    assert steps["trainer"]["image"] == SETTINGS.resolve(registry.runtime("transformers").image)
    assert steps["trainer"]["args"][steps["trainer"]["args"].index("--method") + 1] == "qlora"
    assert steps["trainer"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    [pusher] = spec["containers"]
    assert pusher["args"][:4] == [
        "model",
        "push",
        "/mnt/results",
        "myregistry.azurecr.io/adapters/phi-3-mini-4k-qlora:0.0.1",
    ]
    assert "--registry-config" in pusher["args"]
    secrets = [v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v]
    assert secrets == ["myregistrysecret"]
    assert spec["restartPolicy"] == "Never" and spec["securityContext"]["runAsNonRoot"] is True
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_weights_and_data_share_one_sized_pull_volume(registry: Registry) -> None:
    """As for inference: the blob cache and the files pulled out of it on one volume (hard links, no
    copies), sized by the preset's disk requirement; the trainer mounts its sub-paths read-only."""
    [job] = tuning_manifests(example(), registry, SETTINGS)
    spec = pod(job)
    volumes = {v["name"]: v for v in spec["volumes"]}
    preset = registry.preset("phi-3-mini-4k-instruct")
    assert volumes["weights"] == {
        "name": "weights",
        "emptyDir": {"sizeLimit": f"{-(-preset.requirements.disk // GiB)}Gi"},
    }
    assert "pull-cache" not in volumes and "data" not in volumes
    steps = {c["name"]: c for c in spec["initContainers"]}
    for step in ("model-weights", "data"):
        assert {"name": "weights", "mountPath": "/var/lib/kaito"} in steps[step]["volumeMounts"]
        assert {"name": "KAITO_HOME", "value": "/var/lib/kaito"} in steps[step]["env"]
    assert steps["model-weights"]["args"][3] == "/var/lib/kaito/weights"
    mounts = {m["mountPath"]: m for m in steps["trainer"]["volumeMounts"]}
    assert mounts["/workspace/weights"] == {
        "name": "weights",
        "mountPath": "/workspace/weights",
        "subPath": "weights",
        "readOnly": True,
    }
    assert mounts["/mnt/data"] == {
        "name": "weights",
        "mountPath": "/mnt/data",
        "subPath": "data",
        "readOnly": True,
    }


def test_volumes_and_a_config_map(registry: Registry) -> None:
    ws = example(
        input={"volumeSource": {"persistentVolumeClaim": {"claimName": "data"}}},
        output={"volumeSource": {"persistentVolumeClaim": {"claimName": "results"}}},
        config="my-training-config",
        method="lora",
    )
    [job] = tuning_manifests(ws, registry, SETTINGS)
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    spec = pod(job)
    assert [c["name"] for c in spec["initContainers"]] == ["model-weights"]
    [trainer] = spec["containers"]
    assert trainer["name"] == "trainer"
    assert trainer["args"][-2:] == ["--config", "/mnt/config/training_config.yaml"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "data"}
    assert volumes["results"]["persistentVolumeClaim"] == {"claimName": "results"}
    assert volumes["training-config"]["configMap"] == {"name": "my-training-config"}


def test_an_image_input_is_pulled_with_its_secrets(registry: Registry) -> None:
    ws = example(input={"image": "registry.example.com/data/dolly:1", "imagePullSecrets": ["data-pull"]})
    [job] = tuning_manifests(ws, registry, SETTINGS)
    data = {c["name"]: c for c in pod(job)["initContainers"]}["data"]
    assert data["args"][:4] == ["model", "pull", "registry.example.com/data/dolly:1", "/var/lib/kaito/data"]
    assert sorted(v["secret"]["secretName"] for v in pod(job)["volumes"] if "secret" in v) == [
        "data-pull",
        "myregistrysecret",
    ]


def test_the_revision_follows_the_spec(registry: Registry) -> None:
    one = tuning_manifests(example(), registry, SETTINGS)[0]["metadata"]["annotations"][REVISION_ANNOTATION]
    two = tuning_manifests(example(method="lora"), registry, SETTINGS)[0]["metadata"]["annotations"]
    assert one != two[REVISION_ANNOTATION]


def test_refusals_name_the_fix(registry: Registry) -> None:
    with pytest.raises(PlanError, match="--registry-prefix"):
        tuning_manifests(example(), registry, ImageSettings())
    bare = Registry()
    with pytest.raises(PlanError, match="kaito-runtime-transformers"):
        tuning_manifests(example(), bare, SETTINGS)
    ws = copy.deepcopy(example())
    assert ws.tuning is not None
    ws.tuning.preset = None
    with pytest.raises(PlanError, match=r"needs tuning\.preset"):
        tuning_manifests(ws, registry, SETTINGS)
