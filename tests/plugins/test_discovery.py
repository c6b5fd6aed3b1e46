"""Discovery through real entry points: fake installed distributions (``*.dist-info``) on sys.path."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaito_core.plugins import Registry

GOOD_MODULE = """
from kaito_core.plugins import (
    Architecture, GiB, InstanceType, ModelSource, Preset, ProvisionResult, Requirements, hookimpl,
)


class Provisioner:
    name = "fake-cloud"

    def catalog(self):
        return {"fake-gpu": InstanceType("fake-gpu", "NVIDIA T4", 1, 16 * GiB)}

    def ensure_nodes(self, request):
        return ProvisionResult(pending=request.count)

    def delete_nodes(self, workspace, namespace):
        return None


def preset(name):
    return Preset(
        name=name, family="fake", source=ModelSource(repo="example/fake", revision="0" * 40), formats=(),
        architecture=Architecture(parameters=1, layers=1, attention_heads=1, kv_heads=1, head_dim=1,
                                  context_length=8),
        requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=GiB),
        runtimes=("llamacpp",), default_runtime="llamacpp", license="MIT",
    )


@hookimpl
def kaito_register_presets(register):
    register(preset("fake-model"))
    register(preset("{shared}"))


@hookimpl
def kaito_register_provisioners(register):
    register(Provisioner())
"""

BROKEN_MODULE = "import kaito_no_such_dependency  # the plugin's dependency is not installed\n"

HOOK_FAILS_MODULE = """
from kaito_core.plugins import hookimpl


@hookimpl
def kaito_register_presets(register):
    raise RuntimeError("cannot read the model index")
"""

# registers "shared-model" (a clash with kaito-fake-good) and nothing else
DUPLICATE_MODULE = GOOD_MODULE.replace('register(preset("fake-model"))', "").split(
    "@hookimpl\ndef kaito_register_provisioners"
)[0]


def install(site: Path, distribution: str, module: str, source: str, groups: tuple[str, ...]) -> None:
    """Write what pip would: the module and a dist-info with METADATA and entry_points.txt."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{distribution.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.2.3\n")
    entry_points = "".join(f"[{group}]\n{module} = {module}\n\n" for group in groups)
    (info / "entry_points.txt").write_text(entry_points)


FAKES = ("kaito-fake-good", "kaito-fake-broken", "kaito-fake-hookfails", "kaito-fake-dup")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # one module name per test, so no test sees a module another one imported
    tag = tmp_path.name.replace("-", "_").lower()
    install(
        tmp_path,
        "kaito-fake-good",
        f"fake_good_{tag}",
        GOOD_MODULE.replace("{shared}", "shared-model"),
        ("kaito.presets", "kaito.provisioners"),
    )  # one module in two groups
    install(tmp_path, "kaito-fake-broken", f"fake_broken_{tag}", BROKEN_MODULE, ("kaito.runtimes",))
    install(tmp_path, "kaito-fake-hookfails", f"fake_hookfails_{tag}", HOOK_FAILS_MODULE, ("kaito.presets",))
    install(
        tmp_path,
        "kaito-fake-dup",
        f"fake_dup_{tag}",
        DUPLICATE_MODULE.replace("{shared}", "shared-model"),
        ("kaito.presets",),
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("KAITO_PLUGINS", raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.endswith(tag)]:
        del sys.modules[name]


def test_entry_points_are_discovered_and_broken_plugins_reported(site: Path) -> None:
    registry = Registry()
    registry.load_entry_points(only=FAKES)  # the real plugins installed in this environment stay out

    assert "fake-model" in registry.presets()
    assert registry.owner("preset", "fake-model") == "kaito-fake-good"
    assert registry.provisioner("fake-cloud").catalog()["fake-gpu"].gpu_memory > 0
    by_distribution = {e.distribution: e for e in registry.errors()}
    # its one module serves two groups without a load error (its only problem is the name clash)
    assert [e.name for e in registry.errors() if e.distribution == "kaito-fake-good"] == ["shared-model"]
    broken = by_distribution["kaito-fake-broken"]
    assert broken.kind == "runtime" and broken.version == "1.2.3"
    assert broken.error == "ModuleNotFoundError: No module named 'kaito_no_such_dependency'"
    assert by_distribution["kaito-fake-hookfails"].error == "RuntimeError: cannot read the model index"
    clash = next(e for e in registry.errors() if e.name == "shared-model")
    assert "kaito-fake-good" in (clash.error or "") and "kaito-fake-dup" in (clash.error or "")
    assert "shared-model" not in registry.presets()
    listed = {(p.name, p.distribution, p.version) for p in registry.plugins() if p.error is None}
    assert ("fake-model", "kaito-fake-good", "1.2.3") in listed


def test_kaito_plugins_limits_loading(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAITO_PLUGINS", "kaito-fake-good, kaito_fake_hookfails")
    registry = Registry()
    registry.load_entry_points()
    assert sorted(registry.presets()) == ["fake-model", "shared-model"]  # no clash: kaito-fake-dup not loaded
    assert [e.distribution for e in registry.errors()] == ["kaito-fake-hookfails"]
    assert {p.distribution for p in registry.plugins()} == {"kaito-fake-good", "kaito-fake-hookfails"}
