"""Fixtures for the operator tests: the emulator with the Workspace CRD, test plugins, the operator.

Helpers live in ``operator_support`` (one module object however the tests import it)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kaito_testing.apiserver import ApiServer
from operator_support import (
    OPERATOR_USER,
    RECORD_CALLS_ENV,
    Cluster,
    EmulatedProvisioner,
    Kubelet,
    load_crd,
    make_registry,
)

from kaito_core.operator.run import OperatorThread


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    server = ApiServer(bookmark_interval=1.0).start()
    load_crd(server)
    provisioner = EmulatedProvisioner(str(server.kubeconfig("provisioner")))
    yield Cluster(server, provisioner, make_registry(provisioner), Kubelet(server))
    record = os.environ.get(RECORD_CALLS_ENV)
    if record:  # the RBAC test's run of the operator modules: add this module's calls to its file
        path = Path(record)
        calls = json.loads(path.read_text()) if path.exists() else []
        calls += [[c.group, c.resource, c.verb] for c in server.emulator.calls_by(OPERATOR_USER)]
        path.write_text(json.dumps(calls))
    server.stop()


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[OperatorThread]:
    thread = OperatorThread(cluster.config(), cluster.registry, watch_timeout=30.0).start()
    yield thread
    thread.stop()
