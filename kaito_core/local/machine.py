"""This machine as a planning target: logical CPUs, RAM, and NVIDIA GPUs when ``nvidia-smi`` is there.

The I/O half of ``Hardware.local``: the planner stays pure and gets the numbers from here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kaito_core.planning.hardware import Hardware
from kaito_core.plugins import MiB

NVIDIA_SMI_TIMEOUT_S = 10
_QUERY = "--query-gpu=name,memory.total,compute_cap"


@dataclass(frozen=True)
class GPU:
    name: str
    memory: int  # bytes
    compute_capability: str


def detect_local_hardware() -> Hardware:
    """This machine's CPUs, RAM and GPUs (GPUs of one model, as many as share the first one's model)."""
    gpus = detect_gpus()
    if gpus:
        first = gpus[0]
        same = [g for g in gpus if g.name == first.name]
        return Hardware.local(
            cpu_cores=cpu_count(),
            memory_bytes=memory_bytes(),
            gpu_model=first.name,
            gpu_count=len(same),
            gpu_memory=min(g.memory for g in same),
            compute_capability=first.compute_capability,
        )
    return Hardware.local(cpu_cores=cpu_count(), memory_bytes=memory_bytes())


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_bytes() -> int:
    """Total RAM, capped by a cgroup v2 memory limit when this runs in a container that has one."""
    total = _meminfo_total() or _sysconf_total()
    limit = _cgroup_limit()
    return min(total, limit) if limit else total


def detect_gpus(nvidia_smi: str | None = None) -> list[GPU]:
    """NVIDIA GPUs as ``nvidia-smi`` reports them; none when it is absent, fails or times out."""
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        result = subprocess.run(
            [binary, _QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return parse_nvidia_smi(result.stdout)


def parse_nvidia_smi(output: str) -> list[GPU]:
    """Lines of ``name, memory.total [MiB], compute_cap``; lines that do not parse are skipped."""
    gpus = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[1].isdigit():
            continue
        capability = parts[2] if len(parts) > 2 and parts[2] not in ("[N/A]", "N/A") else ""
        gpus.append(GPU(name=parts[0], memory=int(parts[1]) * MiB, compute_capability=capability))
    return gpus


def _meminfo_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _sysconf_total() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def _cgroup_limit() -> int:
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0
