"""Plugin discovery and the typed registry facade over pluggy.

Callers never touch ``pm.hook``: they ask a :class:`Registry` for presets, runtimes and provisioners by
name. Discovery goes through the entry-point groups ``kaito.presets``, ``kaito.runtimes``,
``kaito.provisioners`` and ``kaito.commands``. A plugin that fails to import, or whose hook raises, is
recorded with its distribution name and the error, and every other plugin still loads. Two
distributions registering the same name is an error naming both; the name is then unusable until one
of them is removed.

The registry calls each hook implementation itself rather than through ``pm.hook.<name>(...)``:
pluggy's hook call runs every implementation in one loop and stops at the first exception, which would
neither say which distribution failed nor let the others contribute. pluggy still does discovery
bookkeeping, validates every implementation against its spec at registration, and orders them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from kaito_core.plugins import hookspecs
from kaito_core.plugins.errors import PluginError
from kaito_core.plugins.presets import Preset
from kaito_core.plugins.provisioners import InstanceType, Provisioner
from kaito_core.plugins.runtimes import Runtime

if TYPE_CHECKING:
    import click

ENTRY_POINT_GROUPS: Mapping[str, str] = {
    "kaito.presets": "preset",
    "kaito.runtimes": "runtime",
    "kaito.provisioners": "provisioner",
    "kaito.commands": "command",
}
#: Comma-separated distribution names: when set, only these are loaded.
PLUGINS_ENV = "KAITO_PLUGINS"

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or broken) plugin object, for ``kaito plugins``."""

    name: str  # the registered name (a preset/runtime/provisioner/command name), or the entry point's
    kind: str  # "preset" | "runtime" | "provisioner" | "command"
    distribution: str
    version: str
    error: str | None = None


@dataclass
class _Table(Generic[T]):
    """Objects of one kind by name, remembering who registered them and any clashes."""

    kind: str
    items: dict[str, T] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, str] = field(default_factory=dict)  # name -> error message
    claimants: dict[str, list[str]] = field(default_factory=dict)  # name -> every distribution, in order

    def add(self, name: str, item: T, distribution: str) -> None:
        claimants = self.claimants.setdefault(name, [])
        claimants.append(distribution)
        if len(claimants) == 1:
            self.items[name] = item
            self.owners[name] = distribution
            return
        distinct = list(dict.fromkeys(claimants))
        if len(distinct) == 1:
            self.conflicts[name] = f"{self.kind} {name!r} is registered twice by {distribution}"
        else:
            both = "both" if len(distinct) == 2 else "all of"
            self.conflicts[name] = (
                f"{self.kind} {name!r} is registered by {both} {', '.join(distinct[:-1])} and "
                f"{distinct[-1]}; uninstall all but one of them or limit loading with {PLUGINS_ENV}"
            )

    def get(self, name: str) -> T:
        if name in self.conflicts:
            raise PluginError(self.conflicts[name])
        try:
            return self.items[name]
        except KeyError:
            known = ", ".join(sorted(self.items)) or "none installed"
            raise PluginError(f"unknown {self.kind} {name!r} (known: {known})") from None

    def usable(self) -> dict[str, T]:
        return {name: item for name, item in self.items.items() if name not in self.conflicts}


_HOOKS: Mapping[str, str] = {
    "preset": "kaito_register_presets",
    "runtime": "kaito_register_runtimes",
    "provisioner": "kaito_register_provisioners",
    "command": "kaito_register_commands",
}


class Registry:
    """The typed facade over the plugin manager."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._load_errors: list[PluginInfo] = []
        self._collected: dict[str, _Table[Any]] | None = None
        self._hook_errors: list[PluginInfo] = []

    # ---------------------------------------------------------------- registering plugin objects

    def register(self, plugin: object, distribution: str = "local", version: str = "0") -> None:
        """Register a plugin module or object directly (tests do this instead of installing)."""
        name = f"{distribution}:{getattr(plugin, '__name__', type(plugin).__name__)}:{id(plugin)}"
        self._pm.register(plugin, name=name)
        self._distributions[name] = (distribution, version)
        self._collected = None

    def refresh(self) -> None:
        """Collect the registrations again: a plugin whose hooks register a different set of objects
        than before (presets resolved from the Hugging Face Hub at run time) calls this."""
        self._collected = None

    def load_entry_points(self, only: Iterable[str] | None = None) -> None:
        """Load every plugin advertised in the kaito entry-point groups.

        ``only`` (or the KAITO_PLUGINS environment variable) limits loading to those distributions.
        """
        if only is None and os.environ.get(PLUGINS_ENV):
            only = [d.strip() for d in os.environ[PLUGINS_ENV].split(",") if d.strip()]
        wanted = {_normalize(d) for d in only} if only is not None else None
        advertised = entry_points()  # one scan of every installed distribution, not one per group
        for group, kind in ENTRY_POINT_GROUPS.items():
            for ep in advertised.select(group=group):
                distribution, version = _distribution_of(ep)
                if wanted is not None and _normalize(distribution) not in wanted:
                    continue
                try:
                    plugin = ep.load()
                    if self._pm.is_registered(plugin):
                        continue  # one module advertised in several groups (presets and runtimes)
                    self.register(plugin, distribution=distribution, version=version)
                except Exception as exc:  # a broken plugin must not take the others down
                    self._load_errors.append(
                        PluginInfo(
                            name=ep.name,
                            kind=kind,
                            distribution=distribution,
                            version=version,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    )
                    self._collected = None

    # ---------------------------------------------------------------- collecting registrations

    def _tables(self) -> dict[str, _Table[Any]]:
        if self._collected is not None:
            return self._collected
        tables: dict[str, _Table[Any]] = {kind: _Table(kind) for kind in _HOOKS}
        self._hook_errors = []
        for kind, hook_name in _HOOKS.items():
            hook = getattr(self._pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order (pluggy calls them in reverse)
                distribution, version = self._distributions.get(impl.plugin_name, (impl.plugin_name, "0"))
                try:
                    contributed = self._call(impl, kind, distribution)
                except Exception as exc:
                    self._hook_errors.append(
                        PluginInfo(
                            name=hook_name,
                            kind=kind,
                            distribution=distribution,
                            version=version,
                            error=f"{type(exc).__name__}: {exc}",
                        )
                    )
                    continue  # a hook that fails contributes nothing, not half of its objects
                for name, obj in contributed:
                    tables[kind].add(name, obj, distribution)
        self._collected = tables
        return tables

    def _call(self, impl: pluggy.HookImpl, kind: str, distribution: str) -> list[tuple[str, Any]]:
        """Run one hook implementation; what it contributed, by name. pluggy lets an implementation
        take fewer arguments than its spec (here: none), hence the argnames."""
        if kind == "command":
            import click

            staging = click.Group()  # commands join `kaito` only if the whole hook succeeds
            impl.function(*[staging for _ in impl.argnames])
            return list(staging.commands.items())
        pending: list[Any] = []
        register = self._register_callback(pending, kind, distribution)
        impl.function(*[register for _ in impl.argnames])
        return [(obj.name, obj) for obj in pending]

    @staticmethod
    def _register_callback(pending: list[Any], kind: str, distribution: str) -> Callable[[Any], None]:
        expected: type = {"preset": Preset, "runtime": Runtime, "provisioner": Provisioner}[kind]

        def register(obj: Any) -> None:
            if not isinstance(obj, expected):
                raise PluginError(
                    f"{distribution} registered {obj!r} as a {kind}, but it is not a {expected.__name__}"
                )
            pending.append(obj)

        return register

    # ---------------------------------------------------------------- the typed facade

    def presets(self) -> dict[str, Preset]:
        return self._tables()["preset"].usable()

    def preset(self, name: str) -> Preset:
        return self._tables()["preset"].get(name)

    def runtimes(self) -> dict[str, Runtime]:
        return self._tables()["runtime"].usable()

    def runtime(self, name: str) -> Runtime:
        return self._tables()["runtime"].get(name)

    def provisioners(self) -> dict[str, Provisioner]:
        return self._tables()["provisioner"].usable()

    def provisioner(self, name: str) -> Provisioner:
        return self._tables()["provisioner"].get(name)

    def commands(self) -> dict[str, click.Command]:
        """``kaito`` subcommands the plugins add, by name."""
        return self._tables()["command"].usable()

    def instance_types(self, provisioner: str | None = None) -> dict[str, InstanceType]:
        """The catalog of one provisioner, or of all of them merged."""
        if provisioner is not None:
            return dict(self.provisioner(provisioner).catalog())
        merged: dict[str, InstanceType] = {}
        for prov in self.provisioners().values():
            merged.update(prov.catalog())
        return merged

    def owner(self, kind: str, name: str) -> str:
        """The distribution that registered ``name``."""
        return self._tables()[kind].owners[name]

    def errors(self) -> list[PluginInfo]:
        """Broken plugins and name clashes, each naming the distribution(s) involved."""
        tables = self._tables()
        clashes = [
            PluginInfo(name=name, kind=kind, distribution=tables[kind].owners.get(name, "?"), version="",
                       error=message)
            for kind in _HOOKS
            for name, message in tables[kind].conflicts.items()
        ]
        return [*self._load_errors, *self._hook_errors, *clashes]

    def plugins(self) -> list[PluginInfo]:
        """Every registered object with its distribution and version, then every error."""
        tables = self._tables()
        versions = dict(self._distributions.values())
        rows = [
            PluginInfo(name=name, kind=kind, distribution=owner, version=versions.get(owner, "0"))
            for kind in _HOOKS
            for name, owner in sorted(tables[kind].owners.items())
            if name not in tables[kind].conflicts
        ]
        return rows + self.errors()


def _normalize(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


def _distribution_of(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return ep.module, "0"
    return dist.metadata["Name"] or ep.module, dist.version


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry of every installed plugin (loaded once per process)."""
    registry = Registry()
    registry.load_entry_points()
    return registry
