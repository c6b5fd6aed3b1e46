"""A third party ships a preset as its own distribution: pip-install the example, find it by entry point.

The example package (examples/plugins/kaito-presets-example) is built and installed with pip into a
temporary --target directory; a fresh interpreter with that directory on PYTHONPATH runs the real
`kaito` CLI, which discovers the preset through the ``kaito.presets`` entry point and plans it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugins" / "kaito-presets-example"

WORKSPACE = """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: workspace-smollm2
resource:
  instanceType: Standard_NC4as_T4_v3
  labelSelector:
    matchLabels:
      apps: smollm2
inference:
  preset:
    name: smollm2-135m
"""


def kaito(args: list[str], pythonpath: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("KAITO_PLUGINS", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-c", "from kaito_core.cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _can_build_without_isolation() -> bool:
    import importlib.util
    from importlib.metadata import version

    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor = (int(part) for part in version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _can_build_without_isolation():
        pytest.fail("building without isolation needs wheel (or setuptools>=70.1): pip install wheel")
    work = tmp_path_factory.mktemp("third-party")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (target / "kaito_presets_example" / "plugin.py").is_file()
    return target


@pytest.mark.slow
def test_installed_preset_is_listed_by_kaito_presets(installed: Path) -> None:
    before = kaito(["presets", "-o", "json"], pythonpath=None)
    assert before.returncode == 0, before.stderr
    assert "smollm2-135m" not in {p["name"] for p in json.loads(before.stdout)}

    after = kaito(["presets", "-o", "json"], pythonpath=installed)
    assert after.returncode == 0, after.stderr
    presets = {p["name"]: p for p in json.loads(after.stdout)}
    example = presets["smollm2-135m"]
    assert example["distribution"] == "kaito-presets-example"
    assert example["source"] == "HuggingFaceTB/SmolLM2-135M@93efa2f097d58c2a74874c7e644dbc9b0cee75a2"
    assert example["runtimes"] == ["vllm"]
    assert "phi-3-mini-4k-instruct" in presets  # the project's own presets still load beside it


@pytest.mark.slow
def test_installed_preset_is_planned_by_the_core(installed: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(WORKSPACE)
    result = kaito(["plan", str(workspace), "-o", "json"], pythonpath=installed)
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    # 0.25Gi x 1.02 of weights on one 16Gi T4: vLLM, one GPU, the whole 8192-token context
    assert (plan["preset"], plan["runtime"], plan["gpus_per_node"], plan["context_length"]) == (
        "smollm2-135m",
        "vllm",
        1,
        8192,
    )
