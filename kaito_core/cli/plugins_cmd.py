"""`kaito plugins` and `kaito presets`: what the installed plugins contribute."""

from __future__ import annotations

import dataclasses

import click

from kaito_core.cli.output import OUTPUT_OPTION, emit_data, emit_table


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}Gi" if n else "-"


@click.command("plugins")
@OUTPUT_OPTION
def plugins_command(output: str) -> None:
    """List installed plugins (name, kind, distribution, version); broken ones with their error."""
    from kaito_core.plugins import default_registry

    rows = default_registry().plugins()
    if output != "table":
        emit_data([dataclasses.asdict(r) for r in rows], output)
        return
    emit_table(
        ["NAME", "KIND", "DISTRIBUTION", "VERSION", "ERROR"],
        [(r.name, r.kind, r.distribution, r.version, r.error or "") for r in rows],
    )


@click.command("presets")
@OUTPUT_OPTION
def presets_command(output: str) -> None:
    """List the presets the installed plugins provide, with their requirements (deprecated ones,
    which validation refuses, are left out)."""
    from kaito_core.plugins import default_registry

    registry = default_registry()
    usable = [p for p in registry.presets().values() if not p.deprecated]
    presets = sorted(usable, key=lambda p: (p.family, p.name))
    if output != "table":
        emit_data(
            [
                {
                    "name": p.name,
                    "family": p.family,
                    "distribution": registry.owner("preset", p.name),
                    "source": f"{p.source.repo}@{p.source.revision}",
                    "parameters": p.architecture.parameters,
                    "contextLength": p.architecture.context_length,
                    "gpuCount": p.requirements.gpu_count,
                    "totalGPUMemory": _gib(p.requirements.total_gpu_memory),
                    "perGPUMemory": _gib(p.requirements.per_gpu_memory),
                    "disk": _gib(p.requirements.disk),
                    "runtimes": list(p.runtimes),
                    "defaultRuntime": p.default_runtime,
                    "formats": [f"{f.format}:{f.quantization}" for f in p.formats],
                    "weightsBytes": {f"{f.format}:{f.quantization}": f.total_bytes for f in p.formats},
                    "requiresAuth": p.requires_auth,
                    "tuning": list(p.tuning.methods) if p.tuning else [],
                    "license": p.license,
                }
                for p in presets
            ],
            output,
        )
        return
    emit_table(
        ["NAME", "FAMILY", "PARAMS", "CONTEXT", "GPUS", "GPU MEM", "PER-GPU", "DISK", "RUNTIMES", "FORMATS",
         "TUNING", "LICENSE"],
        [
            (
                p.name,
                p.family,
                f"{p.architecture.parameters / 1e9:.2f}B",
                p.architecture.context_length,
                p.requirements.gpu_count,
                _gib(p.requirements.total_gpu_memory),
                _gib(p.requirements.per_gpu_memory),
                _gib(p.requirements.disk),
                ",".join(r + ("*" if r == p.default_runtime else "") for r in p.runtimes),
                ",".join(sorted({f"{f.format}:{f.quantization}" for f in p.formats})),
                ",".join(p.tuning.methods) if p.tuning else "-",
                p.license,
            )
            for p in presets
        ],
    )


def register(group: click.Group) -> None:
    group.add_command(plugins_command)
    group.add_command(presets_command)
