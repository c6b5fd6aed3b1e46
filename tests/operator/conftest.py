"""Fixtures for the operator tests: the emulator with the Workspace CRD, test plugins, the operator."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from operator_support import EmulatedProvisioner, Kubelet, make_registry

from kaito_core.operator.config import OperatorConfig
from kaito_core.operator.run import OperatorThread
from kaito_core.planning.manifests import ImageSettings
from kaito_core.plugins.registry import Registry
from kaito_core.testing.apiserver import ApiServer, Call

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "kaito.sh_workspaces.yaml"
OPERATOR_USER = "operator"
#: every request the operator made, over all the tests of the session (the RBAC test reads it)
OPERATOR_CALLS: list[Call] = []

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def load_crd(server: ApiServer) -> None:
    for doc in yaml.safe_load_all(CRD_FILE.read_text()):
        if doc:
            server.apply(doc)


@dataclass
class Cluster:
    server: ApiServer
    provisioner: EmulatedProvisioner
    registry: Registry
    kubelet: Kubelet

    def config(self, **overrides: Any) -> OperatorConfig:
        values: dict[str, Any] = dict(
            provisioner="emulated",
            images=ImageSettings(
                puller_image="example.com/kaito:1", registry_prefix="registry.example.com/models"
            ),
            kubeconfig=str(self.server.kubeconfig(OPERATOR_USER)),
            requeue_seconds=0.2,
            resync_seconds=600.0,
        )
        values.update(overrides)
        return OperatorConfig(**values)

    def workspace(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.server.get("kaito.sh/v1beta1", "Workspace", name, namespace)

    def condition(self, name: str, type_: str, namespace: str = "default") -> dict[str, Any] | None:
        ws = self.workspace(name, namespace) or {}
        return next((c for c in (ws.get("status") or {}).get("conditions", []) if c["type"] == type_), None)

    def operator_writes(self) -> list[Call]:
        return [
            c
            for c in self.server.emulator.calls_by(OPERATOR_USER)
            if c.verb in ("create", "update", "patch", "delete")
        ]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    server = ApiServer(bookmark_interval=1.0).start()
    load_crd(server)
    provisioner = EmulatedProvisioner(str(server.kubeconfig("provisioner")))
    yield Cluster(server, provisioner, make_registry(provisioner), Kubelet(server))
    OPERATOR_CALLS.extend(server.emulator.calls_by(OPERATOR_USER))
    server.stop()


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[OperatorThread]:
    thread = OperatorThread(cluster.config(), cluster.registry, watch_timeout=30.0).start()
    yield thread
    thread.stop()
