"""Registration: the plugin loads with no Azure configuration, found by its entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner
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


def test_registering_the_plugin_imports_no_azure_module() -> None:
    # Every `kaito` command loads this plugin; the Azure SDK is imported only when Azure is called.
    code = (
        "import sys\n"
        "from kaito_core.plugins import Registry\n"
        "from kaito_provisioner_aks import plugin\n"
        "registry = Registry()\n"
        "registry.register(plugin, distribution='kaito-provisioner-aks')\n"
        "registry.provisioner('aks').catalog()\n"
        "print(sorted(m for m in sys.modules if m == 'azure' or m.startswith('azure.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_kaito_aks_instance_types_lists_the_catalog() -> None:
    import json

    from click.testing import CliRunner
    from kaito_provisioner_aks import plugin

    from kaito_core.plugins import Registry

    registry = Registry()
    registry.register(plugin, distribution="kaito-provisioner-aks")
    aks = registry.commands()["aks"]
    table = CliRunner().invoke(aks, ["instance-types", "--gpu", "a100"])
    assert table.exit_code == 0, table.output
    assert "Standard_NC24ads_A100_v4" in table.output and "V100" not in table.output
    rows = json.loads(CliRunner().invoke(aks, ["instance-types", "-o", "json"]).output)
    assert {
        "name": "Standard_NC6s_v3",
        "gpuModel": "NVIDIA V100",
        "gpuCount": 1,
        "gpuMemoryGiB": 16,
        "computeCapability": "7.0",
        "cpuCores": 6,
        "memoryGiB": 112,
    } in rows


def test_kaito_gpu_provisioner_is_a_command_and_says_what_is_missing(tmp_path: Path) -> None:
    registry = Registry()
    registry.register(plugin, distribution="kaito-provisioner-aks")
    command = registry.commands()["gpu-provisioner"]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    result = CliRunner().invoke(command, ["--kubeconfig", str(kubeconfig)], env={
        "AZURE_SUBSCRIPTION_ID": "", "AKS_RESOURCE_GROUP": "", "AKS_CLUSTER_NAME": ""})  # fmt: skip
    assert result.exit_code != 0
    assert "AZURE_SUBSCRIPTION_ID, AKS_RESOURCE_GROUP, AKS_CLUSTER_NAME are not set" in result.output
