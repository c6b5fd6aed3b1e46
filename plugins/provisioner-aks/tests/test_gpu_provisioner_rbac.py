"""deploy/gpu-provisioner/: valid manifests, a restricted pod wired for workload identity, and a
ClusterRole with exactly the calls ``kaito gpu-provisioner`` makes while test_gpu_provisioner.py runs
(in a pytest run of its own, so this module passes alone and in any order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

HERE = Path(__file__).parent
MANIFEST = HERE.parents[2] / "deploy" / "gpu-provisioner" / "gpu-provisioner.yaml"


def documents() -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text()) if d}


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str, str]]:
    record = tmp_path_factory.mktemp("rbac") / "calls.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         str(HERE / "test_gpu_provisioner.py")],
        env={**os.environ, "KAITO_TEST_RECORD_GPU_PROVISIONER_CALLS": str(record)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {(g, r, v) for g, r, v in json.loads(record.read_text())}


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    for doc in documents().values():
        kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_cluster_role_grants_exactly_what_the_gpu_provisioner_called(
    calls: set[tuple[str, str, str]],
) -> None:
    granted = {
        (group, resource, verb)
        for rule in documents()["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted - calls == set(), "granted but never called"
    assert calls - granted == set(), "called but not granted"


def test_the_pod_is_restricted_and_uses_workload_identity() -> None:
    docs = documents()
    pod = docs["Deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    account = docs["ServiceAccount"]
    assert "azure.workload.identity/client-id" in account["metadata"]["annotations"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert docs["ClusterRoleBinding"]["subjects"][0]["name"] == account["metadata"]["name"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["kaito", "gpu-provisioner"]
    assert {e["name"] for e in container["env"]} == {
        "AZURE_SUBSCRIPTION_ID",
        "AKS_RESOURCE_GROUP",
        "AKS_CLUSTER_NAME",
    }
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
    assert (
        context["readOnlyRootFilesystem"] is True and pod["spec"]["securityContext"]["runAsNonRoot"] is True
    )
