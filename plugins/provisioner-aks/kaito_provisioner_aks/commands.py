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


@click.command("gpu-provisioner")
@click.option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    default=None,
    help="Kubeconfig file; default: in-cluster credentials, else ~/.kube/config.",
)
@click.option(
    "--subscription-id", envvar="AZURE_SUBSCRIPTION_ID", default=None, help="The AKS cluster's subscription."
)
@click.option(
    "--resource-group", envvar="AKS_RESOURCE_GROUP", default=None, help="The AKS cluster's resource group."
)
@click.option("--cluster-name", envvar="AKS_CLUSTER_NAME", default=None, help="The AKS cluster's name.")
@click.option("--liveness", default=None, help="Liveness endpoint, e.g. http://0.0.0.0:8081/healthz.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def gpu_provisioner(
    kubeconfig: str | None, subscription_id: str | None, resource_group: str | None,
    cluster_name: str | None, liveness: str | None, verbose: bool,
) -> None:  # fmt: skip
    """Turn KAITO's NodeClaims into AKS agent pools of one VM each (Azure's gpu-provisioner)."""
    import asyncio
    import logging

    from kubernetes import client, config

    from kaito_provisioner_aks.claims import ClaimReconciler
    from kaito_provisioner_aks.config import ConfigError
    from kaito_provisioner_aks.gpu_provisioner import operate

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    try:
        reconciler = ClaimReconciler(
            api, subscription_id=subscription_id, resource_group=resource_group, cluster_name=cluster_name
        )
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    asyncio.run(operate(api, reconciler, liveness=liveness))
