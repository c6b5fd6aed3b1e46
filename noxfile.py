"""Sessions: tests, lint, typecheck, images, benchmarks, the demo and the GPU check.

`nox -s tests` is the test command of the README and of `.ci/run`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(str(p) for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())
#: Test doubles (the Kubernetes API emulator, the ARM server): installed with the test extra only.
TESTING = str(ROOT / "testing" / "kaito-testing")
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"
# nox notes at every session that it looked for uv; this project uses venv, so the note only confuses.
logging.getLogger("nox").addFilter(lambda record: record.getMessage() != "uv binary not found.")


def install_project(session: nox.Session, *extras: str) -> None:
    """kaito-core and every plugin distribution, editable, with the named extras of kaito-core; with
    the test extra, the kaito-testing distribution too."""
    spec = f".[{','.join(extras)}]" if extras else "."
    # kaito-runtime-transformers needs torch: the CPU build first (a local file here), so that no
    # dependency pulls the multi-GB CUDA build from PyPI; a GPU machine installs its own before.
    session.install(os.environ.get("KAITO_TORCH", "torch==2.13.0"))
    testing = ["-e", TESTING] if "test" in extras else []
    session.install("-e", spec, *[arg for p in PLUGINS for arg in ("-e", p)], *testing)


@nox.session
def tests(session: nox.Session) -> None:
    """The core tests and every plugin's tests."""
    install_project(session, "test")
    args = session.posargs or ["tests", *[f"{p}/tests" for p in PLUGINS]]
    session.run("pytest", "-q", "-ra", *args, env={"PYTHONUNBUFFERED": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install_project(session, "test")
    session.install("mypy", "types-PyYAML", "types-requests")
    distributions = [*PLUGINS, TESTING]
    plugin_packages = [str(d.parent) for p in distributions for d in Path(p).glob("kaito_*/__init__.py")]
    packages = ["kaito_core", *plugin_packages]
    session.run("mypy", *packages)


@nox.session
def images(session: nox.Session) -> None:
    """The container images, built with podman from a Debian base made by mmdebstrap (docs/images.md);
    `-- --push REGISTRY [--tag T]` pushes them as REGISTRY/NAME:T."""
    session.install("pip")  # scripts/images.py runs `pip wheel` for the wheels that go into the images
    session.run("python", "scripts/images.py", *session.posargs, env={"PYTHONUNBUFFERED": "1"})


def _bench(session: nox.Session, script: str) -> None:
    install_project(session, "test", "bench")
    session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(name="bench-serving")
def bench_serving(session: nox.Session) -> None:
    """/chat and the OpenAI API vs llama-cpp-python in-process, llama-server and llama_cpp.server;
    then `kaito run` start-up vs loading the GGUF with llama-cpp-python directly."""
    _bench(session, "bench_serving.py")
    _bench(session, "bench_startup.py")


@nox.session(name="bench-artifacts")
def bench_artifacts(session: nox.Session) -> None:
    """Push and pull of the Gemma GGUF vs curl and plain oras-py, against a local registry."""
    _bench(session, "bench_artifacts.py")


@nox.session(name="bench-operator")
def bench_operator(session: nox.Session) -> None:
    """200 and 1000 Workspaces against the API emulator."""
    _bench(session, "bench_operator.py")


@nox.session(name="bench-presets")
def bench_presets(session: nox.Session) -> None:
    """Every catalog preset planned on its KAITO example's instance type, beside KAITO's node estimator."""
    _bench(session, "preset_estimates.py")


@nox.session(name="bench-tuning")
def bench_tuning(session: nox.Session) -> None:
    """`kaito tune` vs plain trl/peft on the tests' tiny model: samples/s and peak RSS, as a ratio."""
    _bench(session, "bench_tuning.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark, one after the other."""
    install_project(session, "test", "bench")
    for script in ("bench_serving.py", "bench_startup.py", "bench_artifacts.py", "bench_operator.py",
                   "preset_estimates.py", "bench_tuning.py"):
        session.run("python", f"benchmarks/{script}")


@nox.session
def demo(session: nox.Session) -> None:
    """Run examples/workspace-gemma-3-270m.yaml on this machine; `-- --once` answers one /chat and exits."""
    session.log(
        "installing kaito-core and the plugins; the first time, pip builds llama-cpp-python from source "
        "(a C/C++ compiler and cmake; about 5 minutes on 2 cores), later runs reuse pip's cached wheel"
    )
    session.install("-e", ".", *[arg for p in PLUGINS for arg in ("-e", p)], silent=False)
    session.run("python", "scripts/demo.py", *session.posargs, env={"PYTHONUNBUFFERED": "1"})
    session.log(f"the kaito command is in {session.bin}: `. {session.bin}/activate`, then `kaito --help`")


@nox.session(name="gpu-check")
def gpu_check(session: nox.Session) -> None:
    """On a machine with an NVIDIA GPU and no network: CUDA llama.cpp and (where installed) vLLM."""
    session.run("bash", "scripts/gpu_check.sh", *session.posargs, external=True,
                env={"KAITO_ROOT": str(ROOT), **os.environ})
