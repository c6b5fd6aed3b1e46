"""deploy/: valid manifests, a restricted operator pod, and a ClusterRole with exactly the calls the
operator makes: every request it sends to the API emulator while the operator scenario modules
(``test_operator_*.py``) run, in a pytest run of their own, so this module passes alone and in any
order."""

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
from operator_support import RECORD_CALLS_ENV, ROOT

DEPLOY = ROOT / "deploy"
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def operator_calls(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str, str]]:
    record = tmp_path_factory.mktemp("rbac") / "calls.json"
    modules = sorted(str(p) for p in HERE.glob("test_operator_*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *modules],
        env={**os.environ, RECORD_CALLS_ENV: str(record)}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return {(group, resource, verb) for group, resource, verb in json.loads(record.read_text())}


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(Path(DEPLOY).glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def find(kind: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind)


def granted() -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in find("ClusterRole")["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_deploy_manifests_validate_against_the_kubernetes_schemas() -> None:
    kinds = [d["kind"] for d in documents()]
    assert kinds.count("Namespace") == 1 and "ValidatingWebhookConfiguration" in kinds
    for doc in documents():
        kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_cluster_role_grants_exactly_what_the_operator_called(
    operator_calls: set[tuple[str, str, str]],
) -> None:
    called = operator_calls
    assert len(called) > 10
    assert granted() - called == set(), "granted but never called (remove from deploy/01-rbac.yaml)"
    assert called - granted() == set(), "called but not granted (add to deploy/01-rbac.yaml)"


def test_operator_runs_restricted_under_its_service_account() -> None:
    deployment = find("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    binding = find("ClusterRoleBinding")
    assert (
        pod["serviceAccountName"]
        == binding["subjects"][0]["name"]
        == find("ServiceAccount")["metadata"]["name"]
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
    assert context["readOnlyRootFilesystem"] is True
    assert find("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_webhook_configuration_points_at_the_operator_service() -> None:
    service = find("Service")
    (hook,) = find("ValidatingWebhookConfiguration")["webhooks"]
    ref = hook["clientConfig"]["service"]
    assert (ref["name"], ref["namespace"]) == (service["metadata"]["name"], service["metadata"]["namespace"])
    args = find("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--webhook-host={ref['name']}.{ref['namespace']}.svc" in args
    assert f"--webhook-port={ref['port']}" in args
