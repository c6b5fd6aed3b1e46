"""The plugin registry with plugin objects registered directly on it (no installation)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from kaito_core.plugins import (
    Architecture,
    GiB,
    InstanceType,
    ModelSource,
    NodeRequest,
    PluginError,
    Preset,
    ProvisionResult,
    Registry,
    Requirements,
    hookimpl,
)


def tiny_preset(name: str) -> Preset:
    return Preset(
        name=name,
        family="tiny",
        source=ModelSource(repo=f"example/{name}", revision="0" * 40),
        formats=(),
        architecture=Architecture(
            parameters=1000, layers=1, attention_heads=1, kv_heads=1, head_dim=8, context_length=128
        ),
        requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=GiB),
        runtimes=("llamacpp",),
        default_runtime="llamacpp",
        license="MIT",
    )


class TinyProvisioner:
    name = "tiny"

    def catalog(self) -> Mapping[str, InstanceType]:
        return {"tiny-gpu": InstanceType("tiny-gpu", "NVIDIA T4", 1, 16 * GiB)}

    def ensure_nodes(self, request: NodeRequest) -> ProvisionResult:
        return ProvisionResult(pending=request.count)

    def delete_nodes(self, workspace: str, namespace: str) -> None:
        return None


class Presets:
    def __init__(self, *names: str) -> None:
        self.names = names

    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        for name in self.names:
            register(tiny_preset(name))


class Provisioners:
    @hookimpl
    def kaito_register_provisioners(self, register: Callable[[Any], None]) -> None:
        register(TinyProvisioner())


class Raising:
    @hookimpl
    def kaito_register_presets(self, register: Callable[[Preset], None]) -> None:
        register(tiny_preset("half-done"))
        raise RuntimeError("weights index unreadable")


class WrongType:
    @hookimpl
    def kaito_register_runtimes(self, register: Callable[[Any], None]) -> None:
        register("not a runtime")


class NoArguments:
    """pluggy lets an implementation take fewer arguments than the spec; such a hook must not crash."""

    @hookimpl
    def kaito_register_presets(self) -> None:
        return None


def test_registered_objects_are_found_by_kind_and_name() -> None:
    registry = Registry()
    registry.register(Presets("a", "b"), distribution="kaito-presets-ab", version="1.0")
    registry.register(Provisioners(), distribution="kaito-provisioner-tiny", version="2.0")
    assert sorted(registry.presets()) == ["a", "b"]
    assert registry.preset("a").name == "a"
    assert registry.provisioner("tiny").catalog()["tiny-gpu"].gpu_count == 1
    assert registry.instance_types() == registry.instance_types("tiny")
    assert registry.owner("preset", "b") == "kaito-presets-ab"
    assert [(p.name, p.kind, p.distribution, p.version) for p in registry.plugins()] == [
        ("a", "preset", "kaito-presets-ab", "1.0"),
        ("b", "preset", "kaito-presets-ab", "1.0"),
        ("tiny", "provisioner", "kaito-provisioner-tiny", "2.0"),
    ]
    assert registry.errors() == []
    with pytest.raises(PluginError, match=r"unknown preset 'c' \(known: a, b\)"):
        registry.preset("c")
    with pytest.raises(PluginError, match=r"unknown runtime 'vllm' \(known: none installed\)"):
        registry.runtime("vllm")


def test_a_hook_that_raises_is_reported_and_the_others_still_load() -> None:
    registry = Registry()
    registry.register(Presets("good"), distribution="kaito-presets-good")
    registry.register(Raising(), distribution="kaito-presets-broken", version="0.3")
    registry.register(NoArguments(), distribution="kaito-presets-empty")
    assert list(registry.presets()) == ["good"]  # nothing of the failing hook, not even "half-done"
    [error] = registry.errors()
    assert (error.distribution, error.version, error.kind) == ("kaito-presets-broken", "0.3", "preset")
    assert error.error == "RuntimeError: weights index unreadable"
    assert error in registry.plugins()


def test_registering_something_that_is_not_a_runtime_is_an_error() -> None:
    registry = Registry()
    registry.register(WrongType(), distribution="kaito-runtime-bad")
    assert registry.runtimes() == {}
    [error] = registry.errors()
    assert error.distribution == "kaito-runtime-bad"
    assert "registered 'not a runtime' as a runtime, but it is not a Runtime" in (error.error or "")


def test_two_distributions_with_one_name_is_an_error_naming_both() -> None:
    registry = Registry()
    registry.register(Presets("shared", "mine"), distribution="kaito-presets-one")
    registry.register(Presets("shared", "yours"), distribution="kaito-presets-two")
    assert sorted(registry.presets()) == ["mine", "yours"]  # the clash makes only that name unusable
    with pytest.raises(PluginError) as caught:
        registry.preset("shared")
    message = str(caught.value)
    assert "kaito-presets-one" in message and "kaito-presets-two" in message
    [error] = registry.errors()
    assert error.name == "shared" and error.error == message
    assert "shared" not in [p.name for p in registry.plugins() if p.error is None]


def test_one_distribution_registering_a_name_twice_is_an_error() -> None:
    registry = Registry()
    registry.register(Presets("twice", "twice"), distribution="kaito-presets-sloppy")
    with pytest.raises(PluginError, match="registered twice by kaito-presets-sloppy"):
        registry.preset("twice")


def test_registering_after_reading_refreshes_the_tables() -> None:
    registry = Registry()
    assert registry.presets() == {}
    registry.register(Presets("late"), distribution="kaito-presets-late")
    assert list(registry.presets()) == ["late"]


def test_three_distributions_with_one_name_are_all_named() -> None:
    registry = Registry()
    for distribution in ("kaito-a", "kaito-b", "kaito-c"):
        registry.register(Presets("shared"), distribution=distribution)
    with pytest.raises(PluginError, match="registered by all of kaito-a, kaito-b and kaito-c"):
        registry.preset("shared")
