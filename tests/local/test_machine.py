"""This machine as a target: CPUs, RAM, and nvidia-smi's answer (a real nvidia-smi where there is one)."""

from __future__ import annotations

import stat
from pathlib import Path

from kaito_core.local.machine import (
    cpu_count,
    detect_gpus,
    detect_local_hardware,
    memory_bytes,
    parse_nvidia_smi,
)
from kaito_core.plugins import MiB


def test_detects_this_machine() -> None:
    hardware = detect_local_hardware()
    assert hardware.kind == "local" and hardware.nodes == 1 and not hardware.can_add_nodes
    assert hardware.cpu_cores == cpu_count() >= 1
    assert hardware.memory == memory_bytes() > 256 * MiB
    assert hardware.description.startswith("this machine (")


def test_parses_nvidia_smi_csv() -> None:
    output = "NVIDIA H200, 143771, 9.0\nNVIDIA H200, 143771, 9.0\nTesla T4, 15360, [N/A]\ngarbage line\n"
    gpus = parse_nvidia_smi(output)
    assert [(g.name, g.memory // MiB, g.compute_capability) for g in gpus] == [
        ("NVIDIA H200", 143771, "9.0"),
        ("NVIDIA H200", 143771, "9.0"),
        ("Tesla T4", 15360, ""),
    ]


def test_runs_the_nvidia_smi_it_is_given(tmp_path: Path) -> None:
    # A stand-in executable that answers like nvidia-smi does for the query the detector sends.
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-gpu=name,memory.total,compute_cap) echo "NVIDIA A10, 23028, 8.6";;\n'
        "*) exit 9;; esac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    gpus = detect_gpus(str(fake))
    assert [(g.name, g.memory // MiB, g.compute_capability) for g in gpus] == [("NVIDIA A10", 23028, "8.6")]
    failing = tmp_path / "broken-smi"
    failing.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)
    assert detect_gpus(str(failing)) == []
    assert detect_gpus(str(tmp_path / "absent")) == []


def test_gpus_found_here_are_in_the_target() -> None:
    gpus = detect_gpus()
    hardware = detect_local_hardware()
    assert hardware.has_gpu == bool(gpus)
    if gpus:
        assert (hardware.gpu_model, hardware.gpu_memory) == (gpus[0].name, gpus[0].memory)
