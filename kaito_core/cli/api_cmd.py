"""`kaito crd`, `kaito validate` and `kaito convert`: the Workspace API on the command line.

Data goes to stdout, problems to stderr as ``FILE: Workspace/NAME: PATH: MESSAGE``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from kaito_core.api import Document, Workspace


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
    group.add_command(crd)
    group.add_command(validate)
    group.add_command(convert)


@click.command()
def crd() -> None:
    """Print the Workspace CustomResourceDefinition (generated from the models)."""
    from kaito_core.api.crd import crd_yaml

    click.echo(crd_yaml(), nl=False)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--provisioner", metavar="NAME",
              help="Check instance types against this installed provisioner's catalog.")
@click.option("--old", "old_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="The stored Workspace(s): also check what an update may not change.")
@click.option("--nodes", "nodes_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Nodes you bring (`kubectl get nodes -o yaml`): check against them, as the webhook "
                   "does with node auto-provisioning off.")
def validate(
    files: tuple[Path, ...], provisioner: str | None, old_file: Path | None, nodes_file: Path | None
) -> None:
    """Check Workspace files (multi-document YAML, v1alpha1 or v1beta1) against every validation rule.

    FILE may be `-` for stdin, e.g. `kubectl get wk -o yaml | kaito validate -`.

    Prints `valid` and exits 0 when there is no error; otherwise lists every error on stderr and exits 1.
    Warnings (e.g. GPU memory under kaito.sh/bypass-resource-checks) are printed but do not fail.
    --provisioner and --nodes are the webhook's two modes (node auto-provisioning on or off); give one.
    """
    from kaito_core.api import FieldError, validate_workspace
    from kaito_core.plugins import PluginError, default_registry

    registry = default_registry()
    for broken in registry.errors():
        click.echo(f"warning: plugin {broken.distribution}: {broken.error}", err=True)
    if provisioner is not None:
        try:
            registry.provisioner(provisioner)
        except PluginError as exc:
            _fail(str(exc))

    if provisioner is not None and nodes_file is not None:
        _fail("give --provisioner (node auto-provisioning) or --nodes (nodes you bring), not both")
    nodes = _read_nodes(nodes_file) if nodes_file is not None else None

    old: dict[tuple[str, str], Workspace] = {}
    if old_file is not None:
        documents = _read(old_file)
        if _report(old_file, documents):
            _fail(f"{old_file}: the old Workspace file has errors (listed above)")
        old = {(d.workspace.namespace, d.workspace.name): d.workspace for d in documents if d.workspace}

    from kaito_core.cli.hub import resolve_hub_presets

    read = [(path, _read(path)) for path in files]
    hub_problems = resolve_hub_presets(
        (d.workspace for _, documents in read for d in documents if d.workspace is not None), registry
    )
    failed = False
    for path, documents in read:
        if not documents:
            click.echo(f"{path}: no Workspace found", err=True)
            failed = True
        for document in documents:  # in file order: each object's read errors, then its rule errors
            problems = list(document.errors)
            ws = document.workspace
            if ws is not None:
                stored = old.get((ws.namespace, ws.name))
                if old_file is not None and stored is None:
                    problems.append(FieldError("metadata.name", f"no Workspace {ws.namespace}/{ws.name} in "
                                               f"{old_file}; update checks skipped", "warning"))
                problems += validate_workspace(ws, registry, old=stored, provisioner=provisioner, nodes=nodes)
                if ws.preset_name in hub_problems:
                    path_of = "tuning.preset.name" if ws.tuning is not None else "inference.preset.name"
                    problems.append(FieldError(path_of, hub_problems[ws.preset_name or ""]))
            for problem in problems:
                severity = "" if problem.is_error else "warning: "
                where = f"{problem.path}: " if problem.path else ""
                click.echo(f"{path}: {document.kind}/{document.name}: {where}{severity}{problem.message}",
                           err=True)
                failed |= problem.is_error
    if failed:
        sys.exit(1)
    click.echo("valid")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "version", required=True, type=click.Choice(["v1alpha1", "v1beta1"]),
              help="The apiVersion to convert to.")
def convert(file: Path, version: str) -> None:
    """Print the Workspaces in FILE converted to another apiVersion (lossless, see docs/api.md)."""
    import yaml

    documents = _read(file)
    if _report(file, documents):
        sys.exit(1)
    if not documents:
        _fail(f"{file}: no Workspace found")
    manifests = [d.workspace.to_manifest(version) for d in documents if d.workspace is not None]
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False), nl=False)


def _read_nodes(path: Path) -> list[dict[str, Any]]:
    """Node objects from YAML: a List (`kubectl get nodes -o yaml`), or Nodes, one per document."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        _fail(f"{path}: cannot read nodes: {exc}")
    nodes: list[dict[str, Any]] = []
    for document in documents:
        if not isinstance(document, dict):
            continue
        items = document.get("items") if str(document.get("kind", "")).endswith("List") else [document]
        for item in items or []:
            if not isinstance(item, dict) or item.get("kind", "Node") != "Node":
                _fail(f"{path}: expected Node objects (kubectl get nodes -o yaml), got "
                      f"{item.get('kind') if isinstance(item, dict) else type(item).__name__}")
            nodes.append(item)
    return nodes


def _read(path: Path) -> list[Document]:
    from kaito_core.api import parse_documents

    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read: {exc}")
    return parse_documents(text)


def _report(path: Path, documents: list[Document]) -> bool:
    """Print the parse errors of ``documents``; True when there were any."""
    failed = False
    for document in documents:
        for error in document.errors:
            where = f"{error.path}: " if error.path else ""
            click.echo(f"{path}: {document.kind}/{document.name}: {where}{error.message}", err=True)
            failed = True
    return failed


def _fail(message: str) -> NoReturn:
    from kaito_core.cli.output import fail

    fail(message)
