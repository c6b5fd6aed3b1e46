"""What `pip install` gets: wheels built from the tree carry the product, not its test doubles."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def build_wheel(source: Path, out: Path) -> zipfile.ZipFile:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def requirements(wheel: zipfile.ZipFile) -> list[str]:
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist") or []


def test_kaito_core_ships_no_emulator(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT, tmp_path)
    names = wheel.namelist()
    assert "kaito_core/plugins/__init__.py" in names and "kaito_core/operator/reconcile.py" in names
    assert [n for n in names if "testing" in n or "apiserver" in n or "kaito_testing" in n] == []


def test_the_aks_plugin_ships_no_fake_arm_and_needs_only_what_it_calls(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT / "plugins" / "provisioner-aks", tmp_path)
    names = wheel.namelist()
    assert "kaito_provisioner_aks/provisioner.py" in names
    assert [n for n in names if "fake" in n or "arm" in n.rsplit("/", 1)[-1]] == []
    needs = {r.split(">")[0].split("=")[0].split(";")[0].strip() for r in requirements(wheel)}
    # kopf and kubernetes: `kaito gpu-provisioner`, the NodeClaim controller, imports them itself
    assert needs == {"kaito-core", "azure-mgmt-containerservice", "azure-identity", "kopf", "kubernetes"}
