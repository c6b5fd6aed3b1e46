"""Benchmark: the operator (`kaito operator`, a real process with the installed plugins) against the
API emulator (another process), with 200 and 1000 Workspaces.

Measured per size, in one run each:
- time from the first create to every Workspace's children written (ConfigMap, Deployment, Service),
  and to every Workspace reporting WorkspaceSucceeded once the test plays the Deployment controller;
- API requests the operator made per Workspace (reads and writes, kopf's own included);
- writes during a resync of unchanged Workspaces: the operator is restarted and re-checks everything
  (target 0);
- peak RSS of the operator process (target under 200 MB at 1000).

Nodes are brought by the user (provisioner `none`): two Ready A100 nodes every Workspace selects.
Results: a table on stdout, benchmarks/results/operator.md and benchmarks/results/operator.json.

    python benchmarks/bench_operator.py [--sizes 200,1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PRESET = "phi-3-mini-4k-instruct"
WRITE_VERBS = {"create", "update", "patch", "delete"}


class Emulator:
    def __init__(self, workdir: Path) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kaito_testing.apiserver",
                "--crd",
                str(ROOT / "crds/kaito.sh_workspaces.yaml"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the API emulator did not start")
        self.http = requests.Session()
        self.workdir = workdir

    def kubeconfig(self, user: str) -> Path:
        path = self.workdir / f"kubeconfig-{user}"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "e",
                    "clusters": [{"name": "e", "cluster": {"server": self.url}}],
                    "users": [{"name": user, "user": {"token": user}}],
                    "contexts": [{"name": "e", "context": {"cluster": "e", "user": user}}],
                }
            )
        )
        return path

    def request(self, method: str, path: str, body: Any = None, patch: bool = False) -> Any:
        headers = {"Authorization": "Bearer bench"}
        if patch:
            headers["Content-Type"] = "application/merge-patch+json"
        reply = self.http.request(method, self.url + path, json=body, headers=headers, timeout=60)
        if reply.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def count(self, path: str) -> int:
        return len(self.request("GET", path)["items"])

    def calls(self, user: str) -> list[dict[str, Any]]:
        return self.http.get(f"{self.url}/_emulator/calls", params={"user": user}, timeout=60).json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Operator:
    """`kaito operator` as a process; its peak RSS sampled every 100 ms."""

    def __init__(self, kubeconfig: Path, log: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "kaito_core.cli.main",
            "operator",
            "--provisioner",
            "none",
            "--registry-prefix",
            "registry.example.com/models",
            "--kubeconfig",
            str(kubeconfig),
            "--requeue-seconds",
            "2",
            "--resync-seconds",
            "3600",
        ]
        self.log = log.open("w")
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        proc = psutil.Process(self.process.pid)
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def gpu_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "apps": "bench",
                "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                "nvidia.com/gpu.count": "1",
                "nvidia.com/gpu.memory": "81920",
            },
        },
    }


def workspace(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": f"ws-{index:04d}", "namespace": "default"},
        "resource": {"labelSelector": {"matchLabels": {"apps": "bench"}}},
        "inference": {"preset": {"name": PRESET}},
    }


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def succeeded(emulator: Emulator) -> int:
    items = emulator.request("GET", "/apis/kaito.sh/v1beta1/workspaces")["items"]
    return sum(
        1
        for ws in items
        for c in (ws.get("status") or {}).get("conditions", [])
        if c["type"] == "WorkspaceSucceeded" and c["status"] == "True"
    )


def run(size: int, workdir: Path) -> dict[str, Any]:
    emulator = Emulator(workdir)
    try:
        for name in ("gpu-node-a", "gpu-node-b"):
            emulator.request("POST", "/api/v1/nodes", gpu_node(name))
            emulator.request(
                "PATCH",
                f"/api/v1/nodes/{name}/status",
                {
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "capacity": {"nvidia.com/gpu": "1", "cpu": "24", "memory": "220Gi"},
                        "allocatable": {"nvidia.com/gpu": "1", "cpu": "23", "memory": "200Gi"},
                    }
                },
                patch=True,
            )
        operator = Operator(emulator.kubeconfig("operator"), workdir / f"operator-{size}.log")
        wait(
            lambda: any(
                c["verb"] == "watch" and c["resource"] == "workspaces" for c in emulator.calls("operator")
            ),
            60,
            "the operator to watch Workspaces",
        )

        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda i: emulator.request(
                        "POST", "/apis/kaito.sh/v1beta1/namespaces/default/workspaces", workspace(i)
                    ),
                    range(size),
                )
            )
        created = time.monotonic()
        base = "/apis/apps/v1/namespaces/default/deployments"
        children_done = wait(
            lambda: (
                emulator.count(base) >= size
                and emulator.count("/api/v1/namespaces/default/services") >= size
                and emulator.count("/api/v1/namespaces/default/configmaps") >= size
            ),
            600,
            "every Workspace's children",
            interval=0.5,
        )
        # Play the Deployment controller: every Deployment reports its replica ready.
        for item in emulator.request("GET", base)["items"]:
            name = item["metadata"]["name"]
            emulator.request(
                "PATCH",
                f"{base}/{name}/status",
                {
                    "status": {
                        "observedGeneration": item["metadata"]["generation"],
                        "replicas": 1,
                        "readyReplicas": 1,
                        "updatedReplicas": 1,
                        "availableReplicas": 1,
                    }
                },
                patch=True,
            )
        ready_done = wait(lambda: succeeded(emulator) >= size, 600, "WorkspaceSucceeded everywhere", 0.5)
        time.sleep(1.0)
        first_calls = emulator.calls("operator")
        operator.stop()
        peak_first = operator.peak_rss

        # Resync: a fresh operator re-checks every unchanged Workspace.
        resync = Operator(emulator.kubeconfig("operator"), workdir / f"operator-{size}-resync.log")
        resync_start = time.monotonic()
        wait(
            lambda: (
                sum(
                    1
                    for c in emulator.calls("operator")[len(first_calls) :]
                    if c["verb"] == "get" and c["resource"] == "services"
                )
                >= size
            ),
            600,
            "the resync to check every Workspace",
            interval=0.5,
        )
        resync_done = time.monotonic()
        settled = -1
        while settled != len(emulator.calls("operator")):  # until the operator has gone quiet for 2 s
            settled = len(emulator.calls("operator"))
            time.sleep(2.0)
        resync_calls = emulator.calls("operator")[len(first_calls) :]
        resync.stop()
    finally:
        emulator.stop()
    writes = Counter(f"{c['verb']} {c['resource']}" for c in resync_calls if c["verb"] in WRITE_VERBS)
    first_writes = sum(1 for c in first_calls if c["verb"] in WRITE_VERBS)
    return {
        "workspaces": size,
        "create_requests_s": round(created - start, 2),
        "children_written_s": round(children_done - start, 2),
        "workspace_succeeded_s": round(ready_done - start, 2),
        "requests_per_workspace": round(len(first_calls) / size, 1),
        "writes_per_workspace": round(first_writes / size, 1),
        "resync_s": round(resync_done - resync_start, 2),
        "resync_requests_per_workspace": round(len(resync_calls) / size, 1),
        "resync_writes": sum(writes.values()),
        "resync_writes_by_kind": dict(writes),
        "peak_rss_mb": round(max(peak_first, resync.peak_rss) / 2**20, 1),
    }


COLUMNS = [
    ("workspaces", "Workspaces"),
    ("children_written_s", "children written (s)"),
    ("workspace_succeeded_s", "all succeeded (s)"),
    ("requests_per_workspace", "requests/ws"),
    ("writes_per_workspace", "writes/ws"),
    ("resync_s", "resync (s)"),
    ("resync_requests_per_workspace", "resync requests/ws"),
    ("resync_writes", "resync writes (target 0)"),
    ("peak_rss_mb", "operator peak RSS MB (target <200)"),
]


def table(rows: list[dict[str, Any]]) -> str:
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule] + ["| " + " | ".join(str(r[key]) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="200,1000")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"running {size} Workspaces ...", flush=True)
            rows.append(run(size, Path(tmp)))
    text = table(rows)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    (RESULTS / "operator.json").write_text(
        json.dumps({"machine": machine, "preset": PRESET, "results": rows}, indent=2) + "\n"
    )
    (RESULTS / "operator.md").write_text(
        "# Operator benchmark\n\n"
        f"`python benchmarks/bench_operator.py` on {machine}: `kaito operator` (a process, installed plugins, "  # noqa: E501
        f"preset {PRESET} on two user-brought A100 nodes) against the API emulator (another process). "
        "Requests per Workspace count everything the operator sent, kopf's own watches and bookkeeping "
        "included. The resync restarts the operator over the unchanged Workspaces.\n\n" + text + "\n"
    )


if __name__ == "__main__":
    main()
