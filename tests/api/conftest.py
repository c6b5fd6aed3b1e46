"""Fixtures for the Workspace API tests: small presets and a provisioner registered on a Registry directly."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from api_support import (
    CATALOG,
    FakeProvisioner,
    PresetPlugin,
    ProvisionerPlugin,
    RuntimePlugin,
    make_preset,
)

from kaito_core.plugins import GiB, InstanceType, Preset, Registry, Requirements  # noqa: F401


@pytest.fixture
def plugin_registry() -> Registry:
    """phi-3 presets (as the seed examples use them), a big one, and the fake provisioner."""
    reg = Registry()
    reg.register(
        PresetPlugin(
            make_preset("phi-3-mini-4k-instruct"),
            make_preset("phi-3-mini-128k-instruct"),
            make_preset("big-model", total_gpu_memory=60 * GiB, per_gpu_memory=20 * GiB),
            make_preset("gated-model", requires_auth=True),
            make_preset("old-model", deprecated=True),
            make_preset("no-tuning", tuning=None),
        ),
        distribution="test-presets",
    )
    reg.register(ProvisionerPlugin(FakeProvisioner(CATALOG)), distribution="test-provisioner")
    reg.register(RuntimePlugin(), distribution="test-runtime")
    return reg


@pytest.fixture
def manifest() -> Callable[..., dict[str, Any]]:
    """A valid v1beta1 inference Workspace manifest; keyword arguments replace top-level sections."""

    def build(**sections: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "apiVersion": "kaito.sh/v1beta1",
            "kind": "Workspace",
            "metadata": {"name": "phi-3", "namespace": "default"},
            "resource": {
                "instanceType": "Standard_NC6s_v3",
                "labelSelector": {"matchLabels": {"apps": "phi-3"}},
            },
            "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
        }
        for key, value in sections.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return base

    return build


@pytest.fixture
def preset_factory() -> Callable[..., Preset]:
    return make_preset


@pytest.fixture
def catalog() -> dict[str, InstanceType]:
    return dict(CATALOG)


@pytest.fixture
def make_registry() -> Callable[..., Registry]:
    """A Registry with the given presets and the fake provisioner."""

    def build(*presets: Preset) -> Registry:
        reg = Registry()
        reg.register(PresetPlugin(*presets), distribution="test-presets")
        reg.register(ProvisionerPlugin(FakeProvisioner(CATALOG)), distribution="test-provisioner")
        return reg

    return build
