"""scripts/gpu_check.sh: argument parsing, and its CPU dry run end to end (about 10 s here): a tiny random
GGUF written with `gguf`, served by `kaito serve --runtime llamacpp`, checked through /chat and the
OpenAI API, with a PASS/FAIL table and the exit status the GPU run would have."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
pytestmark = pytest.mark.timeout(180)


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 150) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "KAITO_ROOT": str(ROOT), **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=environ, cwd=ROOT)


def checks_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_checks", ROOT / "scripts" / "gpu_check" / "checks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "unknown argument '--bogus'"),
    (["--timeout", "soon"], "--timeout must be a whole number"),
    (["--wheelhouse", "/nonexistent/wheels"], "prepare.sh"),
    (["--model", "/nonexistent/model.gguf"], "is not a file"),
])
def test_bad_arguments_exit_2_with_a_reason(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0 and "--cpu-dry-run" in result.stdout and "--wheelhouse" in result.stdout


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_without_a_gpu_the_real_run_fails_clearly() -> None:
    result = run("--skip-vllm")
    assert result.returncode == 1
    assert "nvidia-smi not found" in result.stdout and "FAIL" in result.stdout


def test_placement_is_read_from_the_llama_cpp_log() -> None:
    placement = checks_module().placement
    assert placement("load_tensors: offloaded 5/5 layers to GPU\n", gpu=True) == "offloaded 5/5 layers to GPU"
    with pytest.raises(AssertionError, match="3/5"):
        placement("load_tensors: offloaded 3/5 layers to GPU\n", gpu=True)
    cuda = "load_tensors: layer   0 assigned to device CUDA0, is_swa = 0\n" * 3
    assert "CUDA0" in placement(cuda, gpu=True)
    cpu = "load_tensors: layer   0 assigned to device CPU, is_swa = 0\n"
    assert "CPU" in placement(cpu, gpu=False)
    with pytest.raises(AssertionError, match="no full GPU offload"):
        placement(cpu, gpu=True)
    with pytest.raises(AssertionError, match="no layer placement"):
        placement("nothing here", gpu=False)


def test_cpu_dry_run_passes_and_prints_the_table(tmp_path: Path) -> None:
    pytest.importorskip("gguf", reason="make_tiny_gguf.py needs the gguf package (kaito-core's test extra)")
    pytest.importorskip("llama_cpp")
    result = run("--cpu-dry-run", "--python", sys.executable, "--work", str(tmp_path / "work"))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "GPU check summary (CPU dry run)" in out and "all checks passed" in out
    for check in ("tiny-gguf", "llamacpp-serve", "llamacpp-offload", "llamacpp-chat-prompt",
                  "llamacpp-chat-messages", "llamacpp-openai-chat", "llamacpp-openai-stream",
                  "llamacpp-concurrency", "llamacpp-metrics", "llamacpp-shutdown"):
        assert any(line.split()[:2] == [check, "PASS"] for line in out.splitlines()), f"{check} did not pass"
    assert any(line.split()[:2] == ["vllm", "SKIP"] for line in out.splitlines())


def test_a_failing_check_makes_the_script_fail(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    not_a_model = tmp_path / "broken.gguf"
    not_a_model.write_bytes(b"this is not a GGUF file")
    result = run("--cpu-dry-run", "--skip-vllm", "--python", sys.executable, "--model", str(not_a_model),
                 "--timeout", "60", "--work", str(tmp_path / "work"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.split()[:2] == ["llamacpp-serve", "FAIL"] for line in result.stdout.splitlines())
    assert "check(s) FAILED" in result.stdout
