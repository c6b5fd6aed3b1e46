"""Workspace file -> validated Workspace -> Plan for this machine: everything decided before any process.

Validation is the same call ``kaito validate`` makes, so the errors read the same. Planning is the pure
planner with this machine's hardware; when the model does not fit, the error carries the planner's
numbers and the presets that would fit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kaito_core.local.errors import LocalRunError

if TYPE_CHECKING:
    from kaito_core.api import Workspace
    from kaito_core.planning.hardware import Hardware
    from kaito_core.plugins import Plan, Preset, Registry


@dataclass(frozen=True)
class Prepared:
    source: Path
    workspace: Workspace
    preset: Preset
    plan: Plan
    hardware: Hardware


def load_workspace(path: Path) -> Workspace:
    """The one Workspace in ``path``; a clear error for a missing file, bad YAML or several objects."""
    from kaito_core.api import load_workspaces

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LocalRunError(f"{path}: no such file") from None
    except OSError as exc:
        raise LocalRunError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        workspaces = load_workspaces(text, source=str(path))
    except ValueError as exc:  # WorkspaceError: every problem, each naming its field; shown as it is
        raise LocalRunError(str(exc)) from exc
    if not workspaces:
        raise LocalRunError(f"{path} holds no Workspace (kind: Workspace, apiVersion: kaito.sh/v1beta1)")
    if len(workspaces) > 1:
        names = ", ".join(ws.name or "?" for ws in workspaces)
        raise LocalRunError(
            f"{path} holds {len(workspaces)} Workspaces ({names}); `kaito run` runs one: "
            "put it in a file of its own"
        )
    return workspaces[0]


def validate(workspace: Workspace, registry: Registry, source: Path) -> None:
    """The checks of ``kaito validate``; all errors at once, one per line, each naming its field."""
    from kaito_core.api import validate_workspace

    problems = validate_workspace(workspace, registry)
    lines = []
    for problem in problems:  # worded exactly as `kaito validate` prints them
        severity = "" if problem.is_error else "warning: "
        where = f"{problem.path}: " if problem.path else ""
        line = f"{source}: Workspace/{workspace.name}: {where}{severity}{problem.message}"
        if problem.is_error:
            lines.append(line)
        else:
            click.echo(line, err=True)
    if lines:
        raise LocalRunError("the Workspace is not valid:\n" + "\n".join(lines))
    if workspace.tuning is not None:
        return  # tuned by kaito_core.local.tuning
    if workspace.inference is None:
        raise LocalRunError(f"{source}: the Workspace has neither an inference nor a tuning section")
    if workspace.inference.preset is None:
        raise LocalRunError(
            f"{source}: inference.preset is required by `kaito run` (a custom inference.template is a "
            "pod template and runs only on a cluster)"
        )


def plan_for_machine(workspace: Workspace, registry: Registry, hardware: Hardware) -> Plan:
    """The planner's Plan for this machine; when the model does not fit, say what would."""
    from kaito_core.planning import PlanError, plan_workspace

    try:
        return plan_workspace(workspace, registry, hardware)
    except PlanError as exc:
        fitting = presets_that_fit(workspace, registry, hardware)
        hint = (
            f"\npresets that fit this machine: {', '.join(fitting)}"
            if fitting
            else "\nno installed preset fits this machine"
        )
        raise LocalRunError(f"{workspace.preset_name} does not fit {hardware.description}: "
                            f"{exc}{hint}") from exc


def presets_that_fit(workspace: Workspace, registry: Registry, hardware: Hardware) -> list[str]:
    """Names of the installed presets the planner accepts on ``hardware`` (planning is pure and cheap)."""
    from kaito_core.planning import PlanError, plan_workspace

    fitting = []
    for name, preset in sorted(registry.presets().items()):
        if preset.deprecated or name == workspace.preset_name:
            continue
        candidate = workspace.model_copy(deep=True)
        assert candidate.inference is not None and candidate.inference.preset is not None
        candidate.inference.preset.name = name
        try:
            plan_workspace(candidate, registry, hardware)
        except PlanError:
            continue
        except Exception:  # noqa: S112 - a broken third-party preset must not hide the real error
            continue
        fitting.append(name)
    return fitting


def prepare(source: Path, registry: Registry, hardware: Hardware | None = None) -> Prepared:
    """Load, validate and plan ``source`` for ``hardware`` (this machine's when None)."""
    workspace = load_workspace(source)
    validate(workspace, registry, source)
    if hardware is None:
        from kaito_core.local.machine import detect_local_hardware

        hardware = detect_local_hardware()
    plan = plan_for_machine(workspace, registry, hardware)
    for index, adapter in enumerate(plan.adapters):
        if adapter.volume is not None and not isinstance(adapter.volume.get("hostPath"), dict):
            kinds = ", ".join(sorted(adapter.volume)) or "an empty one"
            raise LocalRunError(
                f"{source}: inference.adapters[{index}].source.volumeSource: `kaito run` reads a volume "
                f"adapter from a hostPath (a directory on this machine), not {kinds}; use hostPath or "
                "source.image"
            )
        if adapter.volume is None and not adapter.image:
            raise LocalRunError(
                f"{source}: inference.adapters[{index}].source: `kaito run` pulls an adapter from "
                "source.image (a registry reference or oci:PATH:TAG) or reads a hostPath volumeSource; "
                "set one"
            )
    return Prepared(
        source=source, workspace=workspace, preset=registry.preset(plan.preset), plan=plan, hardware=hardware
    )
