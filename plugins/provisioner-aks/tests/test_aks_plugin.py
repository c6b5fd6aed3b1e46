"""Registration: the plugin loads with no Azure configuration, found by its entry point."""

from __future__ import annotations

from kaito_provisioner_aks import AKSProvisioner, plugin

from kaito_core.plugins import Provisioner, Registry, default_registry


def test_registers_one_provisioner_named_aks_without_azure() -> None:
    registry = Registry()
    registry.register(plugin, distribution="kaito-provisioner-aks")
    provisioner = registry.provisioner("aks")
    assert isinstance(provisioner, AKSProvisioner)
    assert isinstance(provisioner, Provisioner)
    assert list(registry.provisioners()) == ["aks"]
    assert registry.errors() == []


def test_catalog_is_the_azure_gpu_sku_table() -> None:
    catalog = AKSProvisioner(environ={}).catalog()
    v100 = catalog["Standard_NC6s_v3"]
    assert (v100.gpu_model, v100.gpu_count) == ("NVIDIA V100", 1)
    assert all(name.startswith("Standard_") for name in catalog)


def test_found_through_the_entry_point() -> None:
    registry = default_registry()
    assert isinstance(registry.provisioner("aks"), AKSProvisioner)
    assert registry.owner("provisioner", "aks") == "kaito-provisioner-aks"
