"""`kaito plan`: what would run where, and the memory arithmetic behind it, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kaito_core.cli.output import OUTPUT_OPTION, emit_data, fail

if TYPE_CHECKING:
    from kaito_core.planning import Hardware
    from kaito_core.plugins import Plan, Registry


@click.command("plan")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--instance-type", "instance_type", help="Plan for this instance type (default: resource.instanceType)."
)
@click.option(
    "--nodes",
    "nodes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Plan for the nodes in this file (`kubectl get nodes -o yaml`): nodes you bring.",
)
@click.option("--local", "local", is_flag=True, help="Plan for this machine (what `kaito run` would do).")
@click.option("--provisioner", help="Look instance types up in this provisioner's catalog only.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The inference ConfigMap (or its inference_config.yaml) that inference.config names.",
)
@click.option(
    "--nodeclaims",
    "nodeclaims",
    is_flag=True,
    help="Print the Karpenter NodeClaims the operator would write for the plan (its --provisioner "
    "gpu-provisioner or karpenter) as a v1 List, instead of the plan.",
)
@click.option(
    "--cloud",
    type=click.Choice(["azure", "aws"]),
    default="azure",
    show_default=True,
    help="With --nodeclaims: the claims' cloud (requirements, node class), as the operator's --cloud.",
)
@OUTPUT_OPTION
def plan_command(
    file: Path,
    instance_type: str | None,
    nodes_file: Path | None,
    local: bool,
    provisioner: str | None,
    config_file: Path | None,
    nodeclaims: bool,
    cloud: str,
    output: str,
) -> None:
    """Plan the Workspace(s) in FILE: runtime, weights, GPUs, nodes and the memory arithmetic.

    Exits 1, with the reason on stderr, when the model does not fit the target.
    """
    from kaito_core.api import load_workspaces
    from kaito_core.planning import PlanError, plan_workspace
    from kaito_core.plugins import PluginError, default_registry

    if sum(bool(x) for x in (instance_type, nodes_file, local)) > 1:
        fail("choose one target: --instance-type, --nodes or --local")
    if nodeclaims and (nodes_file or local):
        fail("--nodeclaims plans new nodes of an instance type: it does not go with --nodes or --local")
    try:
        workspaces = load_workspaces(file.read_text(), source=str(file))
    except ValueError as error:
        fail(str(error))
    if not workspaces:
        fail(f"{file} holds no Workspace")
    from kaito_core.cli.hub import resolve_hub_presets

    registry = default_registry()
    config = _read_config(config_file) if config_file else None
    hub_problems = resolve_hub_presets(workspaces, registry)
    plans = []
    claims: list[dict[str, Any]] = []
    for workspace in workspaces:
        problem = hub_problems.get(workspace.preset_name or "")
        if problem is not None:
            fail(f"workspace {workspace.metadata.name or '<unnamed>'}: {problem}")
        try:
            hardware = _target(workspace, registry, instance_type, nodes_file, local, provisioner)
            plans.append(plan_workspace(workspace, registry, hardware, inference_config=config))
        except (PlanError, PluginError) as error:
            fail(f"workspace {workspace.metadata.name or '<unnamed>'}: {error}")
        if nodeclaims:
            sku = instance_type or workspace.resource.instance_type or ""  # _target refused none
            claims += _nodeclaims(workspace, plans[-1], sku, registry, cloud)
    if nodeclaims:
        listed = {"apiVersion": "v1", "kind": "List", "items": claims}
        emit_data(listed, "yaml" if output == "table" else output)
        return
    if output == "table":
        for plan in plans:
            _print_plan(plan)
    else:
        data = [_plan_data(plan) for plan in plans]
        emit_data(data[0] if len(data) == 1 else data, output)


def _target(
    workspace: Any,
    registry: Registry,
    instance_type: str | None,
    nodes_file: Path | None,
    local: bool,
    provisioner: str | None,
) -> Hardware:
    from kaito_core.planning import Hardware, PlanError

    if local:
        from kaito_core.local.machine import detect_local_hardware

        return detect_local_hardware()
    if nodes_file is not None:
        return Hardware.from_nodes(_read_nodes(nodes_file))
    name = instance_type or workspace.resource.instance_type
    if not name:
        raise PlanError(
            "the Workspace has no resource.instanceType: pass --instance-type, --nodes FILE or --local"
        )
    catalog = registry.instance_types(provisioner)
    if name not in catalog:
        known = ", ".join(sorted(catalog)) or "none (install a provisioner, e.g. kaito-provisioner-aks)"
        raise PlanError(f"Unsupported instance type {name}. Supported SKUs: {known}")
    return Hardware.from_instance_type(catalog[name], workspace.resource.count or 1)


def _nodeclaims(workspace: Any, plan: Plan, sku: str, registry: Registry, cloud: str) -> list[dict[str, Any]]:
    """The claims of ``plan``'s nodes, named as the operator names them (from the time they are made)."""
    import time

    from kaito_core.planning.nodeclaims import (
        CLOUD_NODE_CLASSES,
        creation_stamp,
        nodeclaim_manifest,
        nodeclaim_name,
    )

    disk = registry.preset(plan.preset).requirements.disk
    claims = []
    for index in range(plan.node_count):
        name = nodeclaim_name(workspace.namespace, workspace.name, creation_stamp(time.time_ns() + index))
        claims.append(nodeclaim_manifest(workspace, name=name, instance_type=sku, disk_bytes=disk,
                                         node_class=CLOUD_NODE_CLASSES[cloud], cloud=cloud))
    return claims


def _read_nodes(path: Path) -> list[dict[str, Any]]:
    """Nodes from `kubectl get nodes -o yaml|json` (a v1 List), a NodeList, or Node documents."""
    import yaml

    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as error:
        fail(f"{path}: not YAML/JSON: {error}")
    nodes: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict):
            fail(f"{path}: expected Kubernetes objects, found {type(document).__name__}")
        if "items" in document:
            nodes.extend(item for item in document["items"] or [] if isinstance(item, dict))
        elif document.get("kind") == "Node":
            nodes.append(document)
        else:
            kind = document.get("kind")
            fail(f"{path}: expected a List of Nodes (kubectl get nodes -o yaml), found kind {kind}")
    return [node for node in nodes if node.get("kind", "Node") == "Node"]


def _read_config(path: Path) -> dict[str, Any]:
    """inference_config.yaml, given as the ConfigMap that holds it or as the file itself."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        fail(f"{path}: not YAML: {error}")
    if not isinstance(document, dict):
        fail(f"{path}: expected a mapping (a ConfigMap or inference_config.yaml)")
    if document.get("kind") == "ConfigMap":
        text = (document.get("data") or {}).get("inference_config.yaml")
        if text is None:
            fail(f"{path}: the ConfigMap has no inference_config.yaml key")
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            fail(f"{path}: inference_config.yaml is not YAML: {error}")
        if not isinstance(document, dict):
            fail(f"{path}: inference_config.yaml must be a mapping")
    return document


def _plan_data(plan: Plan) -> dict[str, Any]:
    data = plan.to_dict()
    data["gpuCount"] = plan.gpu_count
    data["weightsBytes"] = plan.weights_bytes
    return data


def _print_plan(plan: Plan) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    from kaito_core.planning import describe_memory
    from kaito_core.planning.quantity import gib

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(
        title=f"Plan for {plan.namespace}/{plan.workspace}", title_justify="left", show_header=False, box=None
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    resources = plan.resources
    rows = [
        ("preset", plan.preset),
        ("target", plan.target),
        ("runtime", plan.runtime),
        ("why", plan.runtime_reason),
        ("weights", f"{plan.weights_format} {plan.quantization}, {len(plan.files)} file(s), "
                    f"{gib(plan.weights_bytes)}"),
        ("context length", str(plan.context_length)),
        ("nodes", f"{plan.node_count}"
                  + (f" x {plan.gpus_per_node} GPU(s)" if plan.gpus_per_node else " (CPU)")),
        ("parallelism", f"tensor {plan.tensor_parallel}, pipeline {plan.pipeline_parallel}"),
        ("dtype", plan.dtype),
        ("resources", ", ".join(
            f"{k}={v}"
            for k, v in (("gpu", resources.gpu), ("cpu", resources.cpu), ("memory", resources.memory))
            if v
        )),
        ("image", plan.image or "-"),
    ]
    if plan.runtime == "llamacpp":
        rows.append(("llama.cpp", f"n_gpu_layers {plan.n_gpu_layers}, threads {plan.threads or 'auto'}"))
    else:
        rows.append(("gpu memory utilization", str(plan.gpu_memory_utilization)))
    if plan.runtime_options:
        rows.append(("runtime options", ", ".join(f"{k}={v}" for k, v in plan.runtime_options.items())))
    if plan.adapters:
        adapters = ", ".join(f"{a.name} ({a.image}, strength {a.strength})" for a in plan.adapters)
        rows.append(("adapters", adapters))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    lines = describe_memory(plan)
    if lines:
        console.print("[bold]memory[/bold]")
        for line in lines:
            console.print(f"  {line}", highlight=False)


def register(group: click.Group) -> None:
    """Add `kaito plan`."""
    group.add_command(plan_command)
