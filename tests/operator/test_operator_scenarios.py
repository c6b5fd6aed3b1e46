"""The operator against the emulator: kopf for real, the test playing kubelet and controllers.

Each test works on a Workspace of its own, so the tests pass alone and in any order."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from operator_support import CRD_FILE, Cluster, wait_for, workspace_manifest

from kaito_core.operator.run import OperatorThread
from kaito_core.planning.labels import MANIFEST_HASH_ANNOTATION, WORKSPACE_LABEL

pytestmark = pytest.mark.timeout(120)


def as_tester(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(config.new_client_from_config(str(cluster.server.kubeconfig("tester"))))


def create(cluster: Cluster, manifest: dict[str, Any]) -> dict[str, Any]:
    ns = manifest["metadata"].get("namespace", "default")
    return as_tester(cluster).create_namespaced_custom_object(
        "kaito.sh", "v1beta1", ns, "workspaces", manifest
    )


def update(cluster: Cluster, name: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Read, change, replace; again on 409 (the operator writes the same object), as clients must."""
    for _ in range(20):
        ws = cluster.workspace(name)
        assert ws is not None
        mutate(ws)
        try:
            as_tester(cluster).replace_namespaced_custom_object(
                "kaito.sh", "v1beta1", "default", "workspaces", name, ws
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise AssertionError(f"could not update Workspace {name}: 20 conflicts")


def children(cluster: Cluster, name: str, namespace: str = "default") -> dict[str, dict[str, Any]]:
    found = {}
    for api_version, kind in (
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
    ):
        for obj in cluster.server.list(api_version, kind, namespace, f"{WORKSPACE_LABEL}={name}"):
            found[f"{kind}/{obj['metadata']['name']}"] = obj
    return found


def served(cluster: Cluster, name: str, **extra: Any) -> dict[str, dict[str, Any]]:
    """A Workspace created and driven to WorkspaceSucceeded (the test plays kubelet); its children."""
    create(cluster, workspace_manifest(name, **extra))
    wait_for(lambda: cluster.server.list("v1", "Node", selector=f"kaito.sh/workspace={name}"), what="a node")
    cluster.kubelet.nodes_ready(name)
    wait_for(lambda: f"Deployment/{name}" in children(cluster, name), what="the Deployment")
    cluster.kubelet.deployment_ready("default", name)
    wait_for(
        lambda: (cluster.condition(name, "WorkspaceSucceeded") or {}).get("status") == "True",
        what="WorkspaceSucceeded",
    )
    return children(cluster, name)


def settled(cluster: Cluster, quiet: float = 1.0) -> None:
    """Wait until the operator has written nothing for ``quiet`` seconds (the passes its own last
    writes caused are over)."""
    count, since = len(cluster.operator_writes()), time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the operator kept writing for 30 s"
        time.sleep(0.1)
        if (now := len(cluster.operator_writes())) != count:
            count, since = now, time.monotonic()


def status_schema() -> dict[str, Any]:
    crd = next(d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]


def test_create_provisions_nodes_then_serves(cluster: Cluster, operator: OperatorThread) -> None:
    created = create(cluster, workspace_manifest("phi"))
    uid = created["metadata"]["uid"]
    # The provisioner creates the node; it is NotReady, so nothing else happens yet.
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=phi"), what="a node")
    cond = wait_for(lambda: cluster.condition("phi", "ResourceReady"), what="ResourceReady")
    assert cond["status"] == "False" and cond["reason"] == "NodesNotReady"
    assert children(cluster, "phi") == {}
    ws = cluster.workspace("phi")
    assert ws is not None and "workspace.finalizer.kaito.sh" in ws["metadata"]["finalizers"]

    nodes = cluster.kubelet.nodes_ready("phi")
    wait_for(lambda: len(children(cluster, "phi")) == 3, what="the children")
    objects = children(cluster, "phi")
    assert set(objects) == {"ConfigMap/phi-inference-config", "Deployment/phi", "Service/phi"}
    for obj in objects.values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
        assert obj["metadata"]["labels"][WORKSPACE_LABEL] == "phi"
        clean = {k: v for k, v in obj.items() if k != "status"}
        clean["metadata"] = {
            k: v
            for k, v in obj["metadata"].items()
            if k in ("name", "namespace", "labels", "annotations", "ownerReferences")
        }
        kubernetes_validate.validate(clean, "1.33.0", strict=True)
    pod = objects["Deployment/phi"]["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][2] == "registry.example.com/models/kaito-test-model-4k:bf16"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    inference = wait_for(lambda: cluster.condition("phi", "InferenceReady"), what="InferenceReady")
    assert inference["status"] == "False"

    cluster.kubelet.deployment_ready("default", "phi")
    wait_for(
        lambda: (cluster.condition("phi", "WorkspaceSucceeded") or {}).get("status") == "True",
        what="WorkspaceSucceeded",
    )
    ws = cluster.workspace("phi")
    assert ws is not None
    status = ws["status"]
    assert status["state"] == "Ready" and status["workerNodes"] == nodes and status["targetNodeCount"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "ResourceReady": "True",
        "InferenceReady": "True",
        "WorkspaceSucceeded": "True",
        "WorkspaceReady": "True",
    }
    jsonschema.validate(status, status_schema())


def test_unchanged_workspace_writes_nothing(cluster: Cluster, operator: OperatorThread) -> None:
    served(cluster, "steady")
    settled(cluster)
    before = len(cluster.operator_writes())
    reads = len(cluster.server.emulator.calls_by("operator"))
    # Events about the children and the nodes wake the operator (a kubelet heartbeat, a controller's
    # status write); nothing the operator owns changed, so it reads and writes nothing.
    cluster.server.patch_status(
        "apps/v1",
        "Deployment",
        "steady",
        "default",
        {
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
            ]
        },
    )
    wait_for(lambda: len(cluster.server.emulator.calls_by("operator")) > reads + 3, what="a reconcile pass")
    time.sleep(0.5)
    assert cluster.operator_writes()[before:] == []


def test_image_pull_failure_is_classified(cluster: Cluster, operator: OperatorThread) -> None:
    create(cluster, workspace_manifest("broken"))
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=broken"))
    cluster.kubelet.nodes_ready("broken")
    wait_for(lambda: "Deployment/broken" in children(cluster, "broken"))
    cluster.kubelet.pod_failing(
        "default", "broken", "ImagePullBackOff", 'Back-off pulling image "example.com/kaito:1"'
    )
    cond = wait_for(
        lambda: (
            (c := cluster.condition("broken", "InferenceReady")) and c["reason"] == "ImagePullError" and c
        ),
        what="ImagePullError",
    )
    assert cond["status"] == "False" and "ImagePullBackOff" in cond["message"]
    ws = cluster.workspace("broken")
    assert ws is not None and ws["status"]["state"] == "Failed"


def test_provisioning_errors_reach_the_status_verbatim(cluster: Cluster, operator: OperatorThread) -> None:
    message = (
        "Operation could not be completed as it results in exceeding approved "
        "standardNCADSA100v4Family Cores quota. Current Limit: 0"
    )
    cluster.provisioner.errors["quota"] = ("QuotaExceeded", message)
    create(cluster, workspace_manifest("quota"))
    cond = wait_for(lambda: cluster.condition("quota", "ResourceReady"), what="ResourceReady")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "QuotaExceeded", message)
    succeeded = cluster.condition("quota", "WorkspaceSucceeded")
    assert succeeded is not None and succeeded["message"] == message


def test_spec_change_rewrites_only_what_changed(cluster: Cluster, operator: OperatorThread) -> None:
    before = served(cluster, "lb")
    update(
        cluster,
        "lb",
        lambda ws: ws["metadata"].setdefault("annotations", {}).update({"kaito.sh/enablelb": "True"}),
    )
    wait_for(
        lambda: children(cluster, "lb")["Service/lb"]["spec"]["type"] == "LoadBalancer",
        what="a LoadBalancer Service",
    )
    after = children(cluster, "lb")
    assert (
        after["Deployment/lb"]["metadata"]["resourceVersion"]
        == before["Deployment/lb"]["metadata"]["resourceVersion"]
    )
    assert (
        after["ConfigMap/lb-inference-config"]["metadata"]["resourceVersion"]
        == before["ConfigMap/lb-inference-config"]["metadata"]["resourceVersion"]
    )
    assert (
        after["Service/lb"]["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION]
        != before["Service/lb"]["metadata"]["annotations"][MANIFEST_HASH_ANNOTATION]
    )


def test_adapter_change_rewrites_config_and_workload_not_service(
    cluster: Cluster, operator: OperatorThread
) -> None:
    before = served(cluster, "adapted")
    update(
        cluster,
        "adapted",
        lambda ws: ws["inference"].update(
            adapters=[
                {"source": {"name": "support-lora", "image": "registry.example.com/adapters/support:1"}}
            ]
        ),
    )
    wait_for(
        lambda: (
            len(
                children(cluster, "adapted")["Deployment/adapted"]["spec"]["template"]["spec"][
                    "initContainers"
                ]
            )
            == 2
        ),
        what="the adapter puller",
    )
    after = children(cluster, "adapted")
    assert (
        after["Service/adapted"]["metadata"]["resourceVersion"]
        == before["Service/adapted"]["metadata"]["resourceVersion"]
    )
    assert "support-lora" in after["ConfigMap/adapted-inference-config"]["data"]["inference_config.yaml"]
    assert (
        after["Deployment/adapted"]["metadata"]["generation"]
        == before["Deployment/adapted"]["metadata"]["generation"] + 1
    )


def test_multi_node_preset_runs_as_leader_and_workers(cluster: Cluster, operator: OperatorThread) -> None:
    manifest = workspace_manifest("big", inference={"preset": {"name": "test-model-big"}})
    manifest["resource"]["count"] = 2
    create(cluster, manifest)
    wait_for(
        lambda: len(cluster.server.list("v1", "Node", selector="kaito.sh/workspace=big")) == 2,
        what="two nodes",
    )
    cluster.kubelet.nodes_ready("big")
    wait_for(lambda: len(children(cluster, "big")) == 5, what="the StatefulSets and their Services")
    objects = children(cluster, "big")
    assert set(objects) == {
        "ConfigMap/big-inference-config",
        "Service/big",
        "Service/big-headless",
        "StatefulSet/big",
        "StatefulSet/big-worker",
    }
    assert objects["StatefulSet/big"]["spec"]["replicas"] == 1
    assert objects["StatefulSet/big-worker"]["spec"]["replicas"] == 1
    leader = objects["StatefulSet/big"]["spec"]["template"]["spec"]["containers"][0]
    worker = objects["StatefulSet/big-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert leader["readinessProbe"]["httpGet"]["path"] == "/health"
    assert worker["readinessProbe"] == {"tcpSocket": {"port": 6380}, "periodSeconds": 10}
    wait_for(
        lambda: ((cluster.workspace("big") or {}).get("status") or {}).get("targetNodeCount") == 2,
        what="targetNodeCount",
    )

    # Real listeners stand in for the pods: the leader serves /health, each worker its Ray port.
    with _health_server() as health, _tcp_listener() as worker_port:
        assert cluster.kubelet.probe_statefulset("default", "big", {"big-0": {5000: health}}) == 1
        # the worker has not joined (nothing on its Ray port): the leader alone is not enough
        assert cluster.kubelet.probe_statefulset("default", "big-worker", {}) == 0
        wait_for(
            lambda: (c := cluster.condition("big", "InferenceReady"))
            and "StatefulSet big-worker: 0/1" in c["message"],
            what="InferenceReady False while the worker is not ready",
        )
        assert cluster.condition("big", "InferenceReady")["status"] == "False"  # type: ignore[index]
        # a worker probed like the leader (HTTP /health) would never be ready: it serves no HTTP
        assert _probe_passes(leader, {5000: worker_port}) is False
        reachable = {"big-worker-0": {6380: worker_port}}
        assert cluster.kubelet.probe_statefulset("default", "big-worker", reachable) == 1
        wait_for(
            lambda: (c := cluster.condition("big", "InferenceReady")) and c["status"] == "True",
            what="InferenceReady once every pod passes its own probe",
        )

    update(
        cluster,
        "big",
        lambda ws: ws["inference"].update(
            adapters=[{"source": {"name": "a1", "image": "registry.example.com/adapters/a1:1"}}]
        ),
    )
    wait_for(
        lambda: len(children(cluster, "big")["StatefulSet/big-worker"]["spec"]["template"]["spec"][
            "initContainers"
        ]) == 2,
        what="the StatefulSets updated with the adapter",
    )


def _probe_passes(container: dict[str, Any], ports: dict[int, int]) -> bool:
    from kaito_testing.probes import attempt

    return attempt(container["readinessProbe"], container, ports) is None


@contextlib.contextmanager
def _health_server() -> Iterator[int]:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _tcp_listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


def tuning_manifest(name: str) -> dict[str, Any]:
    manifest = workspace_manifest(name)
    del manifest["inference"]
    manifest["tuning"] = {
        "preset": {"name": "test-model-4k"},
        "method": "qlora",
        "input": {"urls": ["https://example.com/data.parquet"]},
        "output": {"image": "registry.example.com/adapters/tuned:1", "imagePushSecret": "push"},
    }
    return manifest


def test_a_tuning_workspace_runs_its_job_to_success(cluster: Cluster, operator: OperatorThread) -> None:
    create(cluster, tuning_manifest("tune"))
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=tune"), what="a node")
    cluster.kubelet.nodes_ready("tune")
    started = wait_for(
        lambda: (c := cluster.condition("tune", "JobStarted")) and c["status"] == "True" and c,
        what="JobStarted",
    )
    assert started["reason"] == "JobStarted"
    job = cluster.server.get("batch/v1", "Job", "tune", "default")
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["model-weights", "data", "trainer"]
    assert pod["initContainers"][1]["args"][:4] == ["data", "fetch", "--dest", "/var/lib/kaito/data"]
    assert pod["initContainers"][2]["args"][:7] == [
        "tune",
        "--model",
        "/workspace/weights",
        "--data",
        "/mnt/data",
        "--method",
        "qlora",
    ]
    assert pod["containers"][0]["args"][:4] == [
        "model",
        "push",
        "/mnt/results",
        "registry.example.com/adapters/tuned:1",
    ]
    assert (cluster.workspace("tune") or {})["status"]["state"] == "Running"
    cluster.kubelet.job_succeeded("default", "tune")
    wait_for(
        lambda: (cluster.condition("tune", "WorkspaceSucceeded") or {}).get("status") == "True",
        what="WorkspaceSucceeded",
    )
    assert (cluster.workspace("tune") or {})["status"]["state"] == "Succeeded"
    # a new revision of the spec: the Job is recreated (its pod template is immutable)
    uid = job["metadata"]["uid"]
    update(
        cluster, "tune", lambda ws: ws["tuning"]["input"].update(urls=["https://example.com/other.parquet"])
    )
    wait_for(
        lambda: (
            (j := cluster.server.get("batch/v1", "Job", "tune", "default")) and j["metadata"]["uid"] != uid
        ),
        what="the Job recreated",
    )


def test_a_failed_tuning_job_puts_its_reason_and_the_trainers_error_in_the_status(
    cluster: Cluster, operator: OperatorThread
) -> None:
    create(cluster, tuning_manifest("tunefail"))
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=tunefail"), what="a node")
    cluster.kubelet.nodes_ready("tunefail")
    wait_for(lambda: cluster.server.get("batch/v1", "Job", "tunefail", "default"), what="the Job")
    cluster.kubelet.job_failed(
        "default", "tunefail", "Error: training_config.TrainingArguments.max_step: unknown key"
    )
    condition = wait_for(
        lambda: (
            (c := cluster.condition("tunefail", "WorkspaceSucceeded"))
            and c["reason"] == "BackoffLimitExceeded"
            and c
        ),
        what="the failure in the status",
    )
    assert "TrainingArguments.max_step: unknown key" in condition["message"]
    assert "trainer:" in condition["message"]
    assert (cluster.workspace("tunefail") or {})["status"]["state"] == "Failed"


def test_delete_releases_nodes_and_removes_the_finalizer(cluster: Cluster, operator: OperatorThread) -> None:
    served(cluster, "gone")
    as_tester(cluster).delete_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces", "gone")
    wait_for(lambda: cluster.workspace("gone") is None, what="the Workspace to go")
    assert ("default", "gone") in cluster.provisioner.deleted
    assert cluster.server.list("v1", "Node", selector="kaito.sh/workspace=gone") == []
    assert children(cluster, "gone") == {}  # owner references: the garbage collector took them


def test_conflicts_and_dropped_watches_are_recovered(cluster: Cluster, operator: OperatorThread) -> None:
    from kaito_testing.apiserver import Fault

    cluster.server.inject(Fault(verb="create", resource="deployments", code=409, times=2, user="operator"))
    cluster.server.inject(
        Fault(verb="patch", resource="workspaces/status", code=500, times=1, user="operator")
    )
    create(cluster, workspace_manifest("flaky"))
    wait_for(lambda: cluster.server.list("v1", "Node", selector="kaito.sh/workspace=flaky"))
    cluster.server.drop_watches()
    cluster.server.compact()  # the next watch from an old resourceVersion gets 410 Gone
    cluster.kubelet.nodes_ready("flaky")
    wait_for(lambda: "Deployment/flaky" in children(cluster, "flaky"), what="the Deployment despite 409s")
    cluster.kubelet.deployment_ready("default", "flaky")
    wait_for(
        lambda: (cluster.condition("flaky", "WorkspaceSucceeded") or {}).get("status") == "True",
        what="WorkspaceSucceeded after dropped watches",
    )
    codes = {(c.verb, c.resource, c.code) for c in cluster.server.emulator.calls_by("operator")}
    assert ("create", "deployments", 409) in codes and ("create", "deployments", 201) in codes
    assert len([k for k in children(cluster, "flaky") if k.startswith("Deployment/")]) == 1
    ws = cluster.workspace("flaky")
    assert ws is not None
    json.dumps(ws)  # the status was written as merge-patch JSON: the stored object is plain JSON
