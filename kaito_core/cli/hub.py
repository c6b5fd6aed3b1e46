"""`kaito validate` and `kaito plan` for Hugging Face models named by repository id: read them from the
Hub (or, offline, the Hugging Face cache) before the rules and the planner run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kaito_core.api import Workspace
    from kaito_core.plugins import Registry


def resolve_hub_presets(workspaces: Iterable[Workspace], registry: Registry) -> dict[str, str]:
    """Make every ``org/model`` preset the Workspaces name (and no installed preset claims) a preset of
    ``registry``; returns repository id -> the reason for those that cannot be served."""
    from kaito_core.api.names import MODEL_REVISION_ANNOTATION
    from kaito_core.artifacts.hub import HubError
    from kaito_core.artifacts.hub_presets import HubPresets, hub_preset_name, resolve_hub_preset
    from kaito_core.planning.hub_preset import HubModelError

    wanted: dict[str, str | None] = {}
    for ws in workspaces:
        name = ws.preset_name
        if name is not None and hub_preset_name(name, registry):
            wanted.setdefault(name, (ws.metadata.annotations or {}).get(MODEL_REVISION_ANNOTATION))
    if not wanted:
        return {}
    holder = HubPresets.of(registry)
    problems: dict[str, str] = {}
    for repo, revision in wanted.items():
        try:
            holder.add(resolve_hub_preset(repo, registry.runtimes(), revision=revision))
        except (HubError, HubModelError) as exc:
            holder.discard(repo)  # never plan with what an earlier read of the repository said
            problems[repo] = str(exc)
    return problems
