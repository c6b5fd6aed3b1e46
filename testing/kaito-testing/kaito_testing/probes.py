"""Container probes executed as the kubelet executes them: a test double for the node, not the product.

``httpGet`` (success: a status in 200-399 within ``timeoutSeconds``), ``tcpSocket`` (a connection
within ``timeoutSeconds``) and ``exec`` (exit 0), every ``periodSeconds`` after ``initialDelaySeconds``,
``failureThreshold`` failures in a row fail it, ``successThreshold`` successes pass it (the kubelet's
defaults when a field is absent: 0, 10, 1, 3, 1). The kubelet runs the startup probe until it
passes, then readiness and liveness; a failed startup or liveness probe restarts the container.
``port`` is the container's port: ``ports`` maps it to where it can be reached from here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3,
            "successThreshold": 1}  # fmt: skip


@dataclass
class ProbeResult:
    passed: bool
    attempts: int
    last_error: str = ""
    log: list[str] = field(default_factory=list)


def _port(value: Any, container: Mapping[str, Any]) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe port {value!r} names no port of container {container.get('name')}")


def attempt(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    ports: Mapping[int, int],
    exec_in: Callable[[list[str], float], int] | None = None,
) -> str | None:
    """One probe attempt; None when it passes, else why it failed."""
    timeout = float(probe.get("timeoutSeconds", DEFAULTS["timeoutSeconds"]))
    if "httpGet" in probe:
        get = probe["httpGet"]
        declared = _port(get["port"], container)
        port = ports.get(declared, declared)
        scheme = str(get.get("scheme", "HTTP")).lower()
        url = f"{scheme}://127.0.0.1:{port}{get.get('path', '/')}"
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
        try:
            # the kubelet does not verify an HTTPS probe's certificate either
            response = httpx.get(url, headers=headers, timeout=timeout, verify=False)  # noqa: S501
        except httpx.HTTPError as exc:
            return f"GET {url}: {type(exc).__name__}"
        return None if 200 <= response.status_code < 400 else f"GET {url}: {response.status_code}"
    if "tcpSocket" in probe:
        declared = _port(probe["tcpSocket"]["port"], container)
        port = ports.get(declared, declared)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                return None
        except OSError as exc:
            return f"tcp 127.0.0.1:{port}: {exc.strerror or exc}"
    if "exec" in probe:
        if exec_in is None:
            raise ValueError("an exec probe needs a way to run a command in the container")
        code = exec_in(list(probe["exec"]["command"]), timeout)
        return None if code == 0 else f"exec exited {code}"
    raise ValueError(f"probe {dict(probe)} has no httpGet, tcpSocket or exec")


def run_probe(
    probe: Mapping[str, Any],
    container: Mapping[str, Any],
    ports: Mapping[int, int],
    *,
    alive: Callable[[], bool] = lambda: True,
    exec_in: Callable[[list[str], float], int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Run ``probe`` until it passes (``successThreshold`` in a row) or fails (``failureThreshold`` in
    a row), as the kubelet does; ``alive`` False (the container exited) fails it at once."""
    spec = {**DEFAULTS, **probe}
    sleep(float(spec["initialDelaySeconds"]))
    failures = successes = attempts = 0
    result = ProbeResult(False, 0)
    while True:
        if not alive():
            result.last_error = "the container is not running"
            return result
        attempts += 1
        error = attempt(probe, container, ports, exec_in)
        result.attempts = attempts
        if error is None:
            successes += 1
            failures = 0
            if successes >= int(spec["successThreshold"]):
                result.passed = True
                return result
        else:
            failures += 1
            successes = 0
            result.last_error = error
            result.log.append(error)
            if failures >= int(spec["failureThreshold"]):
                return result
        sleep(float(spec["periodSeconds"]))


def container_ready(
    container: Mapping[str, Any],
    ports: Mapping[int, int],
    *,
    alive: Callable[[], bool] = lambda: True,
    exec_in: Callable[[list[str], float], int] | None = None,
) -> dict[str, ProbeResult]:
    """The kubelet's sequence for one container: startup, then readiness, then one liveness round.
    Returns each probe's result; the container is Ready when every one passed."""
    results: dict[str, ProbeResult] = {}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if not probe:
            continue
        results[kind] = run_probe(probe, container, ports, alive=alive, exec_in=exec_in)
        if not results[kind].passed:
            break
    return results
