"""``kaito run tuning.yaml``: the tuning Job's steps as local processes on this machine.

The same steps, in the same order, as the Job's pod (kaito_core.planning.tuning):

1. the base model's safetensors weights: the ``kaito.sh/model-artifact`` annotation (a registry
   reference, pulled, or an OCI layout) else the local store, as ``kaito run`` finds inference weights;
2. the data: ``tuning.input.urls`` fetched with the same SSRF checks as in a cluster, an
   ``input.image`` pulled, or an ``input.volumeSource.hostPath`` read where it is;
3. ``kaito tune`` of the installed trainer (kaito-runtime-transformers), as a child process whose
   progress bar of steps and loss is this terminal's;
4. the adapter pushed to ``output.image`` (a registry, or an OCI layout ``oci:PATH:TAG``), or written
   to ``output.volumeSource.hostPath``.

``tuning.config`` names a ConfigMap in a cluster; here the ``training_config.yaml`` is given with
``--training-config FILE`` (without it, the method's defaults).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kaito_core.api.names import ARTIFACT_ANNOTATION
from kaito_core.local.errors import LocalRunError

if TYPE_CHECKING:
    from kaito_core.api import Workspace
    from kaito_core.plugins import Registry

TRAINER_RUNTIME = "transformers"


@dataclass(frozen=True)
class TuningRun:
    workspace: Workspace
    work_dir: Path  # where the weights, the data and the results go
    training_config: Path | None = None
    progress: bool = True


def _say(message: str) -> None:
    click.echo(f"kaito: {message}", err=True)


def host_path(volume: dict[str, Any] | None, field: str) -> Path | None:
    if volume is None:
        return None
    path = (volume.get("hostPath") or {}).get("path")
    if not path:
        raise LocalRunError(
            f"{field}: `kaito run` reads a volume from this machine's disk only: give hostPath: {{path: DIR}}"
        )
    return Path(path)


def base_weights(ws: Workspace, preset_name: str, dest: Path, progress: bool) -> Path:
    """A directory holding the base model's safetensors files."""
    from kaito_core.artifacts import store_reference
    from kaito_core.local.weights import _from_annotation, link_model_dir

    ref = ws.annotations.get(ARTIFACT_ANNOTATION) or store_reference(preset_name, "safetensors", "bf16")
    return link_model_dir(_from_annotation(ref, dest, progress), dest)


def fetch_data(ws: Workspace, dest: Path, progress: bool) -> Path:
    from kaito_core.artifacts import pull
    from kaito_core.artifacts.download import fetch
    from kaito_core.artifacts.errors import ArtifactError

    source = ws.tuning.input if ws.tuning else None
    assert source is not None
    try:
        local = host_path(source.volume_source, "tuning.input.volumeSource")
        if local is not None:
            return local
        if source.urls:
            for path in fetch(source.urls, dest):
                _say(f"fetched {path.name} ({path.stat().st_size} bytes)")
            return dest
        if source.image:
            pull(source.image, dest, progress=progress)
            return dest
    except ArtifactError as exc:
        raise LocalRunError(f"tuning.input: {exc}") from exc
    raise LocalRunError("tuning.input: exactly one of urls, image or volumeSource must be specified")


def trainer_argv(
    model: Path, data: Path, method: str, results: Path, config: Path | None, progress: bool
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "kaito_core.cli.main",
        "tune",
        "--model",
        str(model),
        "--data",
        str(data),
        "--method",
        method,
        "--output",
        str(results),
        "--progress" if progress else "--no-progress",
    ]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


def run_tuning(run: TuningRun, registry: Registry, spawn: Callable[[list[str]], int] | None = None) -> str:
    """Tune; returns where the adapter went (a reference with its digest, or a directory)."""
    from kaito_core.artifacts import push
    from kaito_core.artifacts.errors import ArtifactError
    from kaito_core.plugins import PluginError

    ws = run.workspace
    tuning = ws.tuning
    assert tuning is not None and tuning.preset is not None and tuning.output is not None
    try:
        registry.runtime(TRAINER_RUNTIME)
    except PluginError as exc:
        raise LocalRunError(
            f"tuning needs the trainer: pip install kaito-runtime-transformers ({exc})"
        ) from exc
    if tuning.config and run.training_config is None:
        raise LocalRunError(
            f"tuning.config names the ConfigMap {tuning.config!r}, which lives in a cluster; give its "
            "training_config.yaml with --training-config FILE"
        )
    results = host_path(tuning.output.volume_source, "tuning.output.volumeSource") or run.work_dir / "results"
    model = base_weights(ws, tuning.preset.name, run.work_dir / "model", run.progress)
    data = fetch_data(ws, run.work_dir / "data", run.progress)
    argv = trainer_argv(model, data, tuning.method or "lora", results, run.training_config, run.progress)
    _say(f"tuning {tuning.preset.name} with {tuning.method or 'lora'} on {data}")
    code = (spawn or (lambda a: subprocess.call(a)))(argv)
    if code != 0:
        raise LocalRunError(f"kaito tune failed (exit {code}); its error is above")
    if tuning.output.image:
        try:
            digest = push(results, tuning.output.image, progress=run.progress)
        except ArtifactError as exc:
            raise LocalRunError(f"tuning.output.image: {exc}") from exc
        return f"{tuning.output.image}@{digest}"
    return str(results)
