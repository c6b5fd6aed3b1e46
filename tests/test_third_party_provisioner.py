"""A third party ships a provisioner as its own distribution: pip-install the example into a temporary
directory, start the real ``kaito operator --provisioner example`` with it on PYTHONPATH against the API
emulator, and a Workspace gets its nodes through it (and gives them back when deleted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kaito_testing.apiserver import ApiServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugins" / "kaito-provisioner-example"
T = TypeVar("T")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("third-party-provisioner")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return target


def kaito_env(pythonpath: Path, kubeconfig: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAITO_PLUGINS", "KAITO_PROVISIONER")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    env["KUBECONFIG"] = str(kubeconfig)
    return env


def test_kaito_plugins_lists_the_example_once_installed(installed: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from kaito_core.cli.main import main; main()", "plugins", "-o", "json"],
        env=kaito_env(installed, tmp_path / "none"), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {(r["name"], r["kind"]): r["distribution"] for r in json.loads(result.stdout)}
    assert rows[("example", "provisioner")] == "kaito-provisioner-example"
    assert rows[("karpenter", "provisioner")] == rows[("gpu-provisioner", "provisioner")] == "kaito-core"


@pytest.fixture
def operator(installed: Path, tmp_path: Path) -> Iterator[tuple[ApiServer, subprocess.Popen[str]]]:
    server = ApiServer(bookmark_interval=1.0).start()
    for doc in yaml.safe_load_all((ROOT / "crds" / "kaito.sh_workspaces.yaml").read_text()):
        if doc:
            server.apply(doc)
    kubeconfig = server.kubeconfig("operator", tmp_path / "kubeconfig")
    log = (tmp_path / "operator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from kaito_core.cli.main import main; main()", "operator",
         "--provisioner", "example", "--requeue-seconds", "0.2"],
        env=kaito_env(installed, kubeconfig), stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    yield server, process
    process.terminate()
    process.wait(30)
    log.close()
    server.stop()


def condition(server: ApiServer, name: str, type_: str) -> dict[str, Any] | None:
    ws = server.get("kaito.sh/v1beta1", "Workspace", name, "default") or {}
    return next((c for c in (ws.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def test_a_workspace_gets_its_nodes_through_the_installed_provisioner(
    operator: tuple[ApiServer, subprocess.Popen[str]],
) -> None:
    server, process = operator
    server.apply({
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "pooled", "namespace": "default"},
        "resource": {"instanceType": "example-a100-1", "labelSelector": {"matchLabels": {"apps": "pooled"}}},
        "inference": {"template": {"spec": {"containers": [{"name": "c", "image": "example.com/x:1"}]}}},
    })  # fmt: skip
    cond = wait_for(
        lambda: (c := condition(server, "pooled", "ResourceReady")) and c["reason"] == "PoolExhausted" and c
    )
    assert "no free example-a100-1 node" in cond["message"]

    server.apply({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "rack1-gpu7", "labels": {"pool.example.kaito.sh/free": "true",
                                                      "node.kubernetes.io/instance-type": "example-a100-1"}},
    })  # fmt: skip
    node = wait_for(
        lambda: (
            (n := server.get("v1", "Node", "rack1-gpu7"))
            and "kaito.sh/workspace" in n["metadata"]["labels"]
            and n
        ),
        what="the provisioner to take the node",
    )
    assert node["metadata"]["labels"]["apps"] == "pooled"
    assert {"key": "sku", "value": "gpu", "effect": "NoSchedule"} in node["spec"]["taints"]
    server.patch_status("v1", "Node", "rack1-gpu7", "", {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "capacity": {"nvidia.com/gpu": "1"}, "allocatable": {"nvidia.com/gpu": "1"},
    })  # fmt: skip
    wait_for(
        lambda: (condition(server, "pooled", "ResourceReady") or {}).get("status") == "True", what="ready"
    )
    assert server.get("apps/v1", "Deployment", "pooled", "default") is not None

    server.delete("kaito.sh/v1beta1", "Workspace", "pooled", "default")
    wait_for(lambda: server.get("kaito.sh/v1beta1", "Workspace", "pooled", "default") is None, what="deleted")
    labels = (server.get("v1", "Node", "rack1-gpu7") or {})["metadata"]["labels"]
    assert labels["pool.example.kaito.sh/free"] == "true" and "kaito.sh/workspace" not in labels
    assert process.poll() is None
