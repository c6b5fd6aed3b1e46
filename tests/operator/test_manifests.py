"""The manifest builder: content, security, and validity against the real Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kaito_core.api import Workspace
from kaito_core.planning.images import ImageSettings, parse_overrides
from kaito_core.planning.labels import CONFIG_FILE, MANIFEST_HASH_ANNOTATION, WORKSPACE_LABEL
from kaito_core.planning.manifests import inference_manifests, spec_hash, template_manifests
from kaito_core.planning.pod import startup_timeout_seconds
from kaito_core.planning.volumes import WeightsVolume
from kaito_core.plugins import AdapterPlan, GiB, Plan, PlanError, PodResources, WeightFile

K8S_VERSION = "1.33.0"
SETTINGS = ImageSettings(
    overrides={"kaito": "example.com/kaito:1"}, registry_prefix="registry.example.com/models"
)


def workspace(**extra: Any) -> Workspace:
    manifest: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "phi", "namespace": "team", "uid": "1111-2222", "annotations": {}},
        "resource": {
            "instanceType": "Standard_NC24ads_A100_v4",
            "labelSelector": {"matchLabels": {"apps": "phi"}},
        },
        "inference": {
            "preset": {"name": "phi-3-mini-4k-instruct", "presetOptions": {"imagePullSecrets": ["regcred"]}}
        },
    }
    for key, value in extra.items():
        manifest[key] = value
    return Workspace.model_validate(manifest)


def plan(nodes: int = 1, **extra: Any) -> Plan:
    fields: dict[str, Any] = dict(
        workspace="phi",
        namespace="team",
        preset="phi-3-mini-4k-instruct",
        runtime="vllm",
        runtime_reason="GPU",
        weights_format="safetensors",
        quantization="bf16",
        files=(WeightFile("model.safetensors", 20 * GiB),),
        context_length=4096,
        node_count=nodes,
        gpus_per_node=1,
        resources=PodResources(gpu=1),
        disk_bytes=70 * GiB,
    )
    fields.update(extra)
    return Plan(**fields)


CONTAINER = {
    "name": "phi",
    "image": "vllm:1",
    "command": ["kaito"],
    "args": ["serve"],
    "ports": [{"name": "http", "containerPort": 5000}],
    "startupProbe": {"httpGet": {"path": "/health", "port": 5000}, "periodSeconds": 10},
}


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_single_node_preset_builds_configmap_deployment_service() -> None:
    objects = by_kind(inference_manifests(workspace(), plan(), CONTAINER, SETTINGS))
    assert set(objects) == {"ConfigMap/phi-inference-config", "Deployment/phi", "Service/phi"}
    for obj in objects.values():
        meta = obj["metadata"]
        assert meta["labels"][WORKSPACE_LABEL] == "phi" and meta["namespace"] == "team"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "kaito.sh/v1beta1",
                "kind": "Workspace",
                "name": "phi",
                "uid": "1111-2222",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["annotations"][MANIFEST_HASH_ANNOTATION]
    config = yaml.safe_load(objects["ConfigMap/phi-inference-config"]["data"][CONFIG_FILE])
    assert config["max_model_len"] == 4096 and config["runtime"] == "vllm"
    service = objects["Service/phi"]["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 80
    assert service["ports"][0]["targetPort"] == 5000


def test_pod_pulls_weights_and_runs_restricted() -> None:
    deployment = by_kind(inference_manifests(workspace(), plan(), CONTAINER, SETTINGS))["Deployment/phi"]
    pod = deployment["spec"]["template"]["spec"]
    (puller,) = pod["initContainers"]
    assert puller["args"][:4] == [
        "model",
        "pull",
        "registry.example.com/models/kaito-phi-3-mini-4k-instruct:bf16",
        "/var/lib/kaito/weights",
    ]
    assert puller["args"][4:] == ["--registry-config", "/etc/kaito/registry-auth/regcred/.dockerconfigjson"]
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volumes[0]["secret"]["secretName"] == "regcred"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    main = pod["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # 15 min + 18 s/GiB x 20 GiB = 1260 s at a 10 s period
    assert main["startupProbe"]["failureThreshold"] == 126
    assert main["readinessProbe"]["httpGet"]["path"] == "/health" and main["livenessProbe"]
    weights = {"name": "weights", "mountPath": "/workspace/weights", "subPath": "weights", "readOnly": True}
    assert weights in main["volumeMounts"]
    assert pod["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [{"matchExpressions": [{"key": "apps", "operator": "In", "values": ["phi"]}]}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["initContainers"] + pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}


def test_startup_timeout_grows_with_size_and_is_capped() -> None:
    assert startup_timeout_seconds(0) == 900
    assert startup_timeout_seconds(10 * GiB) == 900 + 180
    assert startup_timeout_seconds(10_000 * GiB) == 180 * 60


def test_multi_node_is_a_leader_and_workers_with_probes_of_their_own() -> None:
    worker = {"name": "phi-worker", "image": "vllm:1", "command": ["ray"],
              "readinessProbe": {"tcpSocket": {"port": 6380}}}  # fmt: skip
    objects = by_kind(
        inference_manifests(workspace(), plan(nodes=3, pipeline_parallel=3), CONTAINER, SETTINGS, worker)
    )
    assert set(objects) == {
        "ConfigMap/phi-inference-config",
        "Service/phi-headless",
        "StatefulSet/phi",
        "StatefulSet/phi-worker",
        "Service/phi",
    }
    leader, workers = objects["StatefulSet/phi"]["spec"], objects["StatefulSet/phi-worker"]["spec"]
    assert leader["replicas"] == 1 and workers["replicas"] == 2
    assert leader["serviceName"] == workers["serviceName"] == "phi-headless"
    assert leader["selector"]["matchLabels"]["kaito.sh/role"] == "leader"
    assert workers["selector"]["matchLabels"]["kaito.sh/role"] == "worker"
    lead = leader["template"]["spec"]["containers"][0]
    work = workers["template"]["spec"]["containers"][0]
    assert lead["readinessProbe"]["httpGet"] == {"path": "/health", "port": 5000}
    assert work["readinessProbe"] == {"tcpSocket": {"port": 6380}} and "livenessProbe" not in work
    assert {"name": "KAITO_ROLE", "value": "worker"} in work["env"]
    # every pod pulls the weights: each pipeline stage loads its layers from its own volume
    assert workers["template"]["spec"]["initContainers"][0]["name"] == "model-weights"
    assert objects["Service/phi-headless"]["spec"]["clusterIP"] == "None"
    assert objects["Service/phi"]["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "phi-0"


def test_multi_node_needs_a_runtime_with_workers() -> None:
    with pytest.raises(PlanError, match="no worker container"):
        inference_manifests(workspace(), plan(nodes=2, pipeline_parallel=2), CONTAINER, SETTINGS)


def test_weights_volume_is_one_sized_volume_shared_by_cache_and_weights() -> None:
    pod = by_kind(inference_manifests(workspace(), plan(), CONTAINER, SETTINGS))["Deployment/phi"]["spec"][
        "template"
    ]["spec"]
    (weights,) = [v for v in pod["volumes"] if v["name"] == "weights"]
    assert weights == {"name": "weights", "emptyDir": {"sizeLimit": "70Gi"}}  # phi-3 mini's disk: 70Gi
    assert len([v for v in pod["volumes"] if "emptyDir" in v and v["name"] != "dshm"]) == 1
    (puller,) = pod["initContainers"]
    assert puller["volumeMounts"][0] == {"name": "weights", "mountPath": "/var/lib/kaito"}
    assert {"name": "KAITO_HOME", "value": "/var/lib/kaito"} in puller["env"]  # the cache: same volume


def test_weights_on_a_pvc_make_a_statefulset_with_a_claim_per_pod() -> None:
    settings = ImageSettings(
        overrides={"kaito": "example.com/kaito:1"},
        registry_prefix="registry.example.com/models",
        weights_volume=WeightsVolume("pvc", storage_class="premium", size="80Gi"),
    )
    objects = by_kind(inference_manifests(workspace(), plan(), CONTAINER, settings))
    assert "Deployment/phi" not in objects
    sts = objects["StatefulSet/phi"]["spec"]
    (claim,) = sts["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "weights"
    assert claim["spec"]["storageClassName"] == "premium"
    assert claim["spec"]["resources"]["requests"]["storage"] == "80Gi"
    assert "weights" not in {v["name"] for v in sts["template"]["spec"]["volumes"]}
    assert objects["Service/phi"]["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == "phi-0"


def test_weights_volume_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="--weights-volume"):
        WeightsVolume("hostPath")
    with pytest.raises(ValueError, match="needs --weights-volume pvc"):
        WeightsVolume(storage_class="premium")
    with pytest.raises(PlanError, match="smaller than the weights"):
        inference_manifests(
            workspace(), plan(), CONTAINER,
            ImageSettings(registry_prefix="r.example.com/m", weights_volume=WeightsVolume(size="1Gi")),
        )  # fmt: skip


def test_images_resolve_from_one_place() -> None:
    settings = ImageSettings(image_registry="reg.example.com/kaito", image_tag="2.0",
                             overrides={"kaito-runtime-vllm": "mirror.example.com/vllm@sha256:" + "0" * 64},
                             registry_prefix="r.example.com/m")  # fmt: skip
    assert settings.puller_image == "reg.example.com/kaito/kaito:2.0"
    cpu = "kaito-runtime-llamacpp-cpu"
    assert settings.resolve(cpu) == f"reg.example.com/kaito/{cpu}:2.0"
    assert settings.resolve("kaito-runtime-vllm").startswith("mirror.example.com/vllm@")
    assert settings.resolve("my.registry/own:1") == "my.registry/own:1"  # a Workspace's own image
    pod = by_kind(inference_manifests(workspace(), plan(), {**CONTAINER, "image": "kaito-runtime-vllm"},
                                      settings))["Deployment/phi"]["spec"]["template"]["spec"]  # fmt: skip
    assert pod["containers"][0]["image"].startswith("mirror.example.com/vllm@")
    assert pod["initContainers"][0]["image"] == "reg.example.com/kaito/kaito:2.0"
    assert ImageSettings().puller_image == "ghcr.io/kaito-python/kaito:0.1.0"
    assert parse_overrides(["kaito=a.example/k:1,kaito-runtime-vllm=b.example/v:2"]) == {
        "kaito": "a.example/k:1", "kaito-runtime-vllm": "b.example/v:2"}  # fmt: skip
    with pytest.raises(ValueError, match="expected NAME=REF"):
        parse_overrides(["registry.example.com/kaito:1"])


def test_adapters_are_pulled_into_their_own_directories() -> None:
    adapters = (
        AdapterPlan(
            "falcon-lora", "registry.example.com/adapters/falcon:1", image_pull_secrets=("adapter-cred",)
        ),
    )
    pod = by_kind(inference_manifests(workspace(), plan(adapters=adapters), CONTAINER, SETTINGS))[
        "Deployment/phi"
    ]["spec"]["template"]["spec"]
    adapter = pod["initContainers"][1]
    assert adapter["args"][:4] == [
        "model",
        "pull",
        "registry.example.com/adapters/falcon:1",
        "/var/lib/kaito/adapters/falcon-lora",
    ]
    assert "/etc/kaito/registry-auth/adapter-cred/.dockerconfigjson" in adapter["args"]
    assert {"name": "weights", "mountPath": "/var/lib/kaito"} in adapter["volumeMounts"]
    mount = {"name": "weights", "mountPath": "/mnt/adapter", "subPath": "adapters", "readOnly": True}
    assert mount in pod["containers"][0]["volumeMounts"]
    assert {v["name"] for v in pod["volumes"]} >= {"weights", "config"}
    assert "--adapter" in adapter["args"]  # the pull fails unless adapter_config.json arrives


def test_volume_adapters_are_mounted_not_pulled() -> None:
    """KAITO's volume adapters: the VolumeSource mounted at /mnt/adapter/<name>, no init container."""
    claim = {"persistentVolumeClaim": {"claimName": "lora-store"}}
    adapters = (
        AdapterPlan("from-claim", None, volume=claim),
        AdapterPlan("pulled", "registry.example.com/adapters/phi:1"),
    )
    pod = by_kind(inference_manifests(workspace(), plan(adapters=adapters), CONTAINER, SETTINGS))[
        "Deployment/phi"
    ]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["model-weights", "adapter-pulled"]
    assert {"name": "adapter-volume-from-claim", **claim} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {
        "name": "adapter-volume-from-claim",
        "mountPath": "/mnt/adapter/from-claim",
        "readOnly": True,
    } in mounts
    only_volume = by_kind(inference_manifests(workspace(), plan(adapters=adapters[:1]), CONTAINER, SETTINGS))[
        "Deployment/phi"
    ]["spec"]["template"]["spec"]
    assert [c["name"] for c in only_volume["initContainers"]] == ["model-weights"]
    assert not any(m.get("subPath") == "adapters" for m in only_volume["containers"][0]["volumeMounts"])


def test_enablelb_makes_a_load_balancer() -> None:
    ws = workspace(
        metadata={
            "name": "phi",
            "namespace": "team",
            "uid": "1",
            "annotations": {"kaito.sh/enablelb": "True"},
        }
    )
    assert (
        by_kind(inference_manifests(ws, plan(), CONTAINER, SETTINGS))["Service/phi"]["spec"]["type"]
        == "LoadBalancer"
    )


def test_custom_template_is_used_as_written() -> None:
    template = {
        "spec": {
            "containers": [{"name": "custom", "image": "my/server:2", "ports": [{"containerPort": 8080}]}]
        }
    }
    ws = workspace(inference={"template": template})
    objects = by_kind(template_manifests(ws))
    pod = objects["Deployment/phi"]["spec"]["template"]
    assert pod["spec"] == template["spec"] and pod["metadata"]["labels"] == {WORKSPACE_LABEL: "phi"}
    assert objects["Service/phi"]["spec"]["ports"][0]["targetPort"] == 8080


def test_missing_registry_is_a_clear_error() -> None:
    with pytest.raises(PlanError, match="--registry-prefix"):
        inference_manifests(workspace(), plan(), CONTAINER, ImageSettings())


def test_hashes_are_stable_and_follow_the_spec() -> None:
    first = inference_manifests(workspace(), plan(), CONTAINER, SETTINGS)
    assert first == inference_manifests(workspace(), plan(), CONTAINER, SETTINGS)
    changed = inference_manifests(workspace(), plan(context_length=2048), CONTAINER, SETTINGS)
    assert [o["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION] for o in first] != [
        o["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION] for o in changed
    ]
    other = workspace(
        resource={
            "instanceType": "Standard_NC48ads_A100_v4",
            "labelSelector": {"matchLabels": {"apps": "phi"}},
        }
    )
    assert spec_hash(other) != spec_hash(workspace())


@pytest.mark.parametrize("nodes", [1, 3])
@pytest.mark.parametrize("volume", ["emptyDir", "pvc"])
def test_every_object_validates_against_the_kubernetes_schemas(nodes: int, volume: str) -> None:
    adapters = (AdapterPlan("a1", "registry.example.com/adapters/a1:1"),)
    settings = ImageSettings(
        overrides={"kaito": "example.com/kaito:1"},
        registry_prefix="registry.example.com/models",
        weights_volume=WeightsVolume(volume, size="100Gi"),
    )
    worker = {"name": "phi-worker", "image": "vllm:1", "command": ["ray"],
              "readinessProbe": {"tcpSocket": {"port": 6380}, "periodSeconds": 10}}  # fmt: skip
    the_plan = plan(nodes=nodes, adapters=adapters, model_access_secret="hf")
    objects = inference_manifests(workspace(), the_plan, CONTAINER, settings, worker)
    template = {"spec": {"containers": [{"name": "custom", "image": "my/server:2"}]}}
    objects += template_manifests(workspace(inference={"template": template}))
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_schema_check_can_fail() -> None:
    broken = inference_manifests(workspace(), plan(), CONTAINER, SETTINGS)[1]
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("workspace-*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_examples_with_the_installed_plugins_build_valid_manifests(example: Path) -> None:
    """End to end through the real planner and runtime plugins (those installed), on the example's
    instance type from the installed provisioners' catalogs."""
    from kaito_core.api import load_workspaces
    from kaito_core.planning import Hardware, plan_workspace
    from kaito_core.plugins import default_registry

    registry = default_registry()
    for ws in load_workspaces(example.read_text()):
        if ws.inference is None or ws.inference.preset is None:
            continue  # tuning: its Job is the tuning builder's
        if ws.inference.preset.name not in registry.presets():
            pytest.skip(f"preset {ws.inference.preset.name} is not installed")
        ws.metadata.uid = "00000000-0000-0000-0000-000000000001"
        if ws.resource.instance_type is None:  # nodes the user brings: plan for a CPU node
            hardware = Hardware.cpu_only(8, 32 * GiB, "a CPU node")
        else:
            sku = registry.instance_types().get(ws.resource.instance_type)
            if sku is None:
                pytest.skip(f"no installed provisioner offers {ws.resource.instance_type}")
            hardware = Hardware.from_instance_type(sku, ws.resource.count)
        plan = plan_workspace(ws, registry, hardware)
        container = registry.runtime(plan.runtime).container(plan)
        for obj in inference_manifests(ws, plan, container, SETTINGS):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_weights_from_the_hub_pull_hf_with_the_model_access_secret_as_token() -> None:
    settings = ImageSettings(weights_from="hub")
    the_plan = plan(
        source_repo="microsoft/Phi-3-mini-4k-instruct",
        source_revision="0a67737cc96d2554230f90338b163bc6380a2a85",
        model_access_secret="hf-token",
        files=(WeightFile("model-00001-of-00002.safetensors", 10 * GiB), WeightFile("config.json", 1)),
    )
    pod = by_kind(inference_manifests(workspace(), the_plan, CONTAINER, settings))["Deployment/phi"]["spec"][
        "template"
    ]["spec"]
    (puller,) = pod["initContainers"]
    assert puller["args"] == [
        "model", "pull", "hf://microsoft/Phi-3-mini-4k-instruct@0a67737cc96d2554230f90338b163bc6380a2a85",
        "/var/lib/kaito/weights", "--include", "model-00001-of-00002.safetensors", "--include", "config.json",
    ]  # fmt: skip
    env = {e["name"]: e for e in puller["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}
    assert env["HF_HOME"]["value"] == "/var/lib/kaito/huggingface"  # on the weights volume, beside KAITO_HOME
    with pytest.raises(PlanError, match="names no Hugging Face revision"):
        inference_manifests(workspace(), plan(source_repo="x/y", source_revision="pypi:pkg==1"), CONTAINER,
                            settings)  # fmt: skip
