"""`kaito aks ...`: the AKS provisioner's own commands (through ``kaito_register_commands``)."""

from __future__ import annotations

import json

import click

from kaito_core.plugins import GiB
from kaito_provisioner_aks.catalog import AKS_CATALOG


@click.group("aks")
def aks() -> None:
    """The AKS provisioner (kaito-provisioner-aks)."""


@aks.command("instance-types")
@click.option("--gpu", "gpu_model", help="Only this GPU model, e.g. A100 (a substring, any case).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def instance_types(gpu_model: str | None, output: str) -> None:
    """The Azure GPU VM sizes a Workspace's resource.instanceType may name."""
    rows = [
        sku
        for sku in sorted(AKS_CATALOG.values(), key=lambda s: (s.gpu_model, s.total_gpu_memory, s.name))
        if gpu_model is None or gpu_model.lower() in sku.gpu_model.lower()
    ]
    if output == "json":
        data = [
            {"name": s.name, "gpuModel": s.gpu_model, "gpuCount": s.gpu_count,
             "gpuMemoryGiB": s.gpu_memory // GiB, "computeCapability": s.compute_capability,
             "cpuCores": s.cpu_cores, "memoryGiB": s.memory // GiB}
            for s in rows
        ]  # fmt: skip
        click.echo(json.dumps(data, indent=2))
        return
    header = ("NAME", "GPU", "GPUS", "GPU MEM", "CC", "CPUS", "MEMORY")
    table = [header] + [
        (s.name, s.gpu_model, str(s.gpu_count), f"{s.gpu_count} x {s.gpu_memory // GiB}Gi",
         s.compute_capability, str(s.cpu_cores), f"{s.memory // GiB}Gi")
        for s in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
