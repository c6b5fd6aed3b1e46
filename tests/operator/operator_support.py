"""Test plugins and cluster actors for the operator scenarios.

- a preset and a runtime registered on a ``Registry`` (no plugin distribution needed);
- ``EmulatedProvisioner``: what a cloud provisioner does, against the emulator: it creates Node objects
  that appear NotReady (the VM is booting), remembers them per Workspace, reports errors verbatim;
- ``Kubelet``: plays the node agent and the controllers (nodes turn Ready with nvidia.com/gpu capacity,
  Deployments report ready replicas, pods report image pull failures).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kaito_testing.apiserver import ApiServer, Call
from kubernetes import client, config

from kaito_core.operator.config import OperatorConfig
from kaito_core.planning.images import ImageSettings
from kaito_core.plugins import (
    Architecture,
    GiB,
    InstanceType,
    ModelSource,
    NodeRequest,
    Preset,
    ProvisionResult,
    Registry,
    Requirements,
    TuningSupport,
    WeightFile,
    WeightFormat,
    hookimpl,
)

T = TypeVar("T")

SKU = InstanceType("Standard_NC24ads_A100_v4", "NVIDIA A100", 1, 80 * GiB, "8.0", 24, 220 * GiB)
PRESET = Preset(
    name="test-model-4k",
    family="test",
    source=ModelSource("example/test-model", "0123456789abcdef"),
    formats=(WeightFormat("safetensors", "bf16", (WeightFile("model.safetensors", 7 * GiB, "ab" * 32),)),),
    architecture=Architecture(
        parameters=3_800_000_000, layers=32, attention_heads=32, kv_heads=32, head_dim=96, context_length=4096
    ),
    requirements=Requirements(gpu_count=1, total_gpu_memory=9 * GiB, per_gpu_memory=9 * GiB, disk=80 * GiB),
    runtimes=("vllm",),
    default_runtime="vllm",
    license="MIT",
    tuning=TuningSupport(methods=("lora", "qlora")),
)

#: Too big for one A100 node: the planner spreads it over two (a StatefulSet).
BIG_PRESET = Preset(
    name="test-model-big",
    family="test",
    source=ModelSource("example/test-model-big", "fedcba9876543210"),
    formats=(WeightFormat("safetensors", "bf16", (WeightFile("model.safetensors", 100 * GiB, "cd" * 32),)),),
    architecture=Architecture(
        parameters=50_000_000_000,
        layers=64,
        attention_heads=64,
        kv_heads=8,
        head_dim=128,
        context_length=4096,
    ),
    requirements=Requirements(
        gpu_count=2, total_gpu_memory=100 * GiB, per_gpu_memory=50 * GiB, disk=300 * GiB
    ),
    runtimes=("vllm",),
    default_runtime="vllm",
    license="MIT",
    distributed_inference=True,
)


class GpuRuntime:
    """A GPU runtime whose container runs `kaito serve` (as the real runtime plugins do)."""

    name = "vllm"
    formats = ("safetensors",)
    needs_gpu = True
    image = "example.com/kaito-vllm:0.1"

    def overhead_bytes(self, plan_context_length: int) -> int:
        return 2 * GiB

    def supports_architecture(self, architecture: str) -> bool:
        return architecture in {"LlamaForCausalLM", "Qwen2ForCausalLM"}

    def container(self, plan: Any) -> dict[str, Any]:
        return {
            "name": plan.workspace,
            "image": self.image,
            "command": ["kaito"],
            "args": [
                "serve",
                "--runtime",
                "vllm",
                "--model",
                plan.model_dir,
                "--port",
                str(plan.port),
                "--max-model-len",
                str(plan.context_length),
            ],
            "ports": [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}],
        }

    def worker_container(self, plan: Any) -> dict[str, Any]:
        """A worker that joins the leader and serves no HTTP: its probes check its own TCP port."""
        ray = {"tcpSocket": {"port": 6380}, "periodSeconds": 10}
        return {
            "name": f"{plan.workspace}-worker",
            "image": self.image,
            "command": ["ray"],
            "args": ["start", "--block"],
            "ports": [{"name": "ray-node", "containerPort": 6380, "protocol": "TCP"}],
            "readinessProbe": ray,
            "livenessProbe": ray,
        }

    def engine(self, config: Any) -> Any:
        raise NotImplementedError("the operator tests never serve")


class EmulatedProvisioner:
    """Creates Node objects through the API (as user ``provisioner``), as a cloud would register VMs."""

    name = "emulated"

    def __init__(self, kubeconfig: str) -> None:
        self.core = client.CoreV1Api(config.new_client_from_config(kubeconfig))
        self.errors: dict[str, tuple[str, str]] = {}  # workspace -> (reason, message)
        self.deleted: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def catalog(self) -> Mapping[str, InstanceType]:
        return {SKU.name: SKU}

    def _nodes(self, workspace: str, namespace: str) -> list[Any]:
        selector = f"kaito.sh/workspace={workspace},kaito.sh/workspacenamespace={namespace}"
        return list(self.core.list_node(label_selector=selector).items)

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        if request.workspace in self.errors:
            reason, message = self.errors[request.workspace]
            return ProvisionResult(error=message, reason=reason)
        with self.lock:
            nodes = self._nodes(request.workspace, request.namespace)
            for index in range(len(nodes), request.count):
                key = f"{request.namespace}/{request.workspace}/{index}"
                labels = {
                    **request.labels,
                    "kaito.sh/workspace": request.workspace,
                    "kaito.sh/workspacenamespace": request.namespace,
                    "node.kubernetes.io/instance-type": request.instance_type,
                }
                self.core.create_node(
                    {
                        "metadata": {
                            "name": f"ws{hashlib.sha256(key.encode()).hexdigest()[:9]}",
                            "labels": labels,
                        },
                        "spec": {"taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]},
                    }
                )
            nodes = self._nodes(request.workspace, request.namespace)
        ready = tuple(
            n.metadata.name
            for n in nodes
            if any(
                c.type == "Ready" and c.status == "True"
                for c in ((n.status.conditions if n.status else None) or [])
            )
        )
        return ProvisionResult(ready_nodes=ready, pending=request.count - len(ready))

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        for node in self._nodes(workspace, namespace):
            self.core.delete_node(node.metadata.name)
        self.deleted.append((namespace, workspace))


class Kubelet:
    """Plays the kubelet, the device plugin and the workload controllers."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server

    def nodes_ready(self, workspace: str, gpus: int = 1) -> list[str]:
        names = []
        for node in self.server.list("v1", "Node", selector=f"kaito.sh/workspace={workspace}"):
            name = node["metadata"]["name"]
            self.server.patch_status(
                "v1",
                "Node",
                name,
                "",
                {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                    "capacity": {"nvidia.com/gpu": str(gpus), "cpu": "24", "memory": "220Gi"},
                    "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "23", "memory": "200Gi"},
                },
            )
            names.append(name)
        return names

    def deployment_ready(self, namespace: str, name: str) -> None:
        deployment = self.server.get("apps/v1", "Deployment", name, namespace)
        assert deployment is not None
        replicas = deployment["spec"].get("replicas", 1)
        self.server.patch_status(
            "apps/v1",
            "Deployment",
            name,
            namespace,
            {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            },
        )

    def probe_statefulset(self, namespace: str, name: str, reachable: dict[str, dict[int, int]]) -> int:
        """Each pod of the StatefulSet is Ready when its own readiness probe passes, one attempt as the
        kubelet makes it (kaito_testing.probes), against ``reachable[pod]``: container port -> a port on
        127.0.0.1 where that pod answers (a pod absent there answers nothing). Returns the ready count,
        written into the StatefulSet's status as its controller would."""
        from kaito_testing.probes import attempt

        sts = self.server.get("apps/v1", "StatefulSet", name, namespace)
        assert sts is not None
        replicas = sts["spec"].get("replicas", 1)
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        probe = container["readinessProbe"]
        ready = 0
        for index in range(replicas):
            ports = reachable.get(f"{name}-{index}")
            unreachable = {int(p["containerPort"]): 9 for p in container.get("ports") or []}  # discard
            if attempt(probe, container, ports if ports is not None else unreachable) is None:
                ready += 1
        self.server.patch_status(
            "apps/v1",
            "StatefulSet",
            name,
            namespace,
            {
                "observedGeneration": sts["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": ready,
                "updatedReplicas": replicas,
                "availableReplicas": ready,
            },
        )
        return ready

    def job_succeeded(self, namespace: str, name: str) -> None:
        """The Job controller's status for a Job whose pod completed."""
        _job_status(self.server, namespace, name, {"type": "Complete", "status": "True"}, {"succeeded": 1})

    def job_failed(self, namespace: str, name: str, last_words: str) -> None:
        """Its pod's trainer exited 1 with ``last_words`` as termination message, backoffLimit times."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-xk2p9",
                "namespace": namespace,
                "labels": {"kaito.sh/workspace": name},
            },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "pusher", "image": "example.com/kaito:1"}],
            },
        }
        self.server.apply(pod)
        terminated = {"exitCode": 1, "reason": "Error", "message": f"loading\n{last_words}\n"}
        self.server.patch_status(
            "v1",
            "Pod",
            pod["metadata"]["name"],
            namespace,
            {
                "phase": "Failed",
                "initContainerStatuses": [
                    {
                        "name": "trainer",
                        "ready": False,
                        "restartCount": 0,
                        "image": "x",
                        "imageID": "",
                        "state": {"terminated": terminated},
                    }
                ],
            },
        )
        _job_status(
            self.server,
            namespace,
            name,
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            },
            {"failed": 4},
        )

    def pod_failing(self, namespace: str, workspace: str, reason: str, message: str) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{workspace}-7d9f-abcde",
                "namespace": namespace,
                "labels": {"kaito.sh/workspace": workspace},
            },
            "spec": {"containers": [{"name": workspace, "image": "example.com/kaito-vllm:0.1"}]},
        }
        self.server.apply(pod)
        self.server.patch_status(
            "v1",
            "Pod",
            pod["metadata"]["name"],
            namespace,
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "model-weights",
                        "ready": False,
                        "restartCount": 0,
                        "image": "example.com/kaito:1",
                        "imageID": "",
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                ],
            },
        )


class TrainerRuntime:
    """Stands for kaito-runtime-transformers, whose image the tuning Job's trainer runs."""

    name = "transformers"
    formats = ("safetensors",)
    needs_gpu = False
    image = "example.com/kaito-transformers:0.1"

    def overhead_bytes(self, plan_context_length: int) -> int:
        return GiB

    def container(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("the operator tests serve with the vllm double")

    def engine(self, config: Any) -> Any:
        raise NotImplementedError("a test double")


def _job_status(
    server: ApiServer, namespace: str, name: str, condition: dict[str, Any], counts: dict[str, int]
) -> None:
    job = server.get("batch/v1", "Job", name, namespace)
    assert job is not None, f"no Job {namespace}/{name}"
    now = "2026-01-01T00:00:00Z"
    server.patch_status(
        "batch/v1",
        "Job",
        name,
        namespace,
        {
            "startTime": now,
            **counts,
            "conditions": [{"lastProbeTime": now, "lastTransitionTime": now, **condition}],
            **({"completionTime": now} if condition["type"] == "Complete" else {}),
        },
    )


def make_registry(provisioner: EmulatedProvisioner) -> Registry:
    class Plugin:
        @hookimpl
        def kaito_register_presets(self, register: Any) -> None:
            register(PRESET)
            register(BIG_PRESET)

        @hookimpl
        def kaito_register_runtimes(self, register: Any) -> None:
            register(GpuRuntime())
            register(TrainerRuntime())

        @hookimpl
        def kaito_register_provisioners(self, register: Any) -> None:
            register(provisioner)

    registry = Registry()
    registry.register(Plugin(), distribution="kaito-operator-tests")
    return registry


def workspace_manifest(name: str, namespace: str = "default", **extra: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": namespace},
        "resource": {"instanceType": SKU.name, "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": PRESET.name}},
    }
    manifest.update(extra)
    return manifest


ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "kaito.sh_workspaces.yaml"
OPERATOR_USER = "operator"
#: When set, each module's cluster fixture appends the operator's requests ([group, resource, verb])
#: to the JSON file it names (tests/operator/test_rbac.py).
RECORD_CALLS_ENV = "KAITO_TEST_RECORD_OPERATOR_CALLS"


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
                overrides={"kaito": "example.com/kaito:1"}, registry_prefix="registry.example.com/models"
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
