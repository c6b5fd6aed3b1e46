"""Hugging Face models named by repository id, made into presets: the Hub I/O of KAITO's generic path.

``inference.preset.name: org/model`` that no installed preset claims is read from the Hub (through
``HubClient``: the revision in the ``kaito.sh/model-revision`` annotation, else ``main`` resolved once to
its commit), and ``kaito_core.planning.hub_preset`` turns the ``config.json`` and the file listing into a
``Preset``. ``HubPresets`` holds those presets as a plugin of the registry, so validation, planning and
the operator find them as they find installed ones. Offline, the Hugging Face cache answers (or the
error says what is missing). Errors are ``HubError`` (the Hub) or ``HubModelError`` (the model).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping

from kaito_core.api.names import MODEL_REVISION_ANNOTATION, is_repo_id
from kaito_core.artifacts.hub import CONFIG_FILE, HubClient
from kaito_core.planning.hub_preset import RepoFile, preset_from_hub
from kaito_core.plugins import Preset, Registry, Runtime, hookimpl

__all__ = [
    "HUB_DISTRIBUTION",
    "MODEL_REVISION_ANNOTATION",
    "HubPresets",
    "hub_preset_name",
    "resolve_hub_preset",
]


#: The distribution name presets read from the Hub are registered under.
HUB_DISTRIBUTION = "huggingface-hub"
_HOLDERS: weakref.WeakKeyDictionary[Registry, HubPresets] = weakref.WeakKeyDictionary()


def hub_preset_name(name: str | None, registry: Registry) -> bool:
    """Whether ``name`` is a repository id that no installed preset claims (so the Hub must answer,
    again each time: a preset read earlier may have been pinned to another revision)."""
    if not name or not is_repo_id(name):
        return False
    return name not in registry.presets() or registry.owner("preset", name) == HUB_DISTRIBUTION


def resolve_hub_preset(
    repo: str,
    runtimes: Mapping[str, Runtime],
    *,
    revision: str | None = None,
    client: HubClient | None = None,
) -> Preset:
    """Read ``repo`` at ``revision`` (default ``main``) and build its preset; pinned to the commit."""
    client = client or HubClient()
    listing = client.listing(repo, revision)
    config = client.read_json(repo, CONFIG_FILE, listing.sha)
    files = [RepoFile(f.path, f.size or 0, f.sha256) for f in listing.files]
    return preset_from_hub(repo, listing.sha, config, files, gated=listing.gated, runtimes=runtimes)


class HubPresets:
    """A registry plugin holding the presets resolved from the Hub; ``add`` makes one visible (or
    replaces the one of that name). One per registry: ``HubPresets.of(registry)``."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._presets: dict[str, Preset] = {}
        self._lock = threading.Lock()
        registry.register(self, distribution=HUB_DISTRIBUTION)

    @classmethod
    def of(cls, registry: Registry) -> HubPresets:
        holder = _HOLDERS.get(registry)
        if holder is None:
            holder = _HOLDERS[registry] = cls(registry)
        return holder

    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        with self._lock:
            presets = list(self._presets.values())
        for preset in presets:
            register(preset)

    def add(self, preset: Preset) -> None:
        with self._lock:
            self._presets[preset.name] = preset
        self._registry.refresh()

    def discard(self, name: str) -> None:
        with self._lock:
            removed = self._presets.pop(name, None)
        if removed is not None:
            self._registry.refresh()

    def get(self, name: str) -> Preset | None:
        with self._lock:
            return self._presets.get(name)
