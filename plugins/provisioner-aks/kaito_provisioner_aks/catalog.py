"""The Azure GPU VM sizes kaito can place a Workspace on (KAITO's SKU list, plus CPU cores and RAM).

GPU memory is per GPU, in the units KAITO's SKU table uses (``16Gi`` for a V100, ``80Gi`` for an
A100 80GB, ``94Gi`` for an H100 NVL, ``141Gi`` for an H200). Sources: KAITO ``pkg/sku/azure_sku_handler.go``
(GPU model, count and total GPU memory, as summarised in docs/planning.md) and the Azure VM size pages
(vCPUs, memory, GPU compute capability from NVIDIA's CUDA GPU list).
"""

from __future__ import annotations

from kaito_core.plugins import GiB, InstanceType

V100 = ("NVIDIA V100", 16 * GiB, "7.0")
T4 = ("NVIDIA T4", 16 * GiB, "7.5")
A10 = ("NVIDIA A10", 24 * GiB, "8.6")
A100_40 = ("NVIDIA A100", 40 * GiB, "8.0")
A100_80 = ("NVIDIA A100", 80 * GiB, "8.0")
H100_NVL = ("NVIDIA H100", 94 * GiB, "9.0")
H100_SXM = ("NVIDIA H100", 80 * GiB, "9.0")
H200 = ("NVIDIA H200", 141 * GiB, "9.0")


def _sku(name: str, gpu: tuple[str, int, str], count: int, cpu_cores: int, memory_gib: int) -> InstanceType:
    model, per_gpu, capability = gpu
    return InstanceType(
        name=name,
        gpu_model=model,
        gpu_count=count,
        gpu_memory=per_gpu,
        compute_capability=capability,
        cpu_cores=cpu_cores,
        memory=memory_gib * GiB,
    )


_SKUS = (
    # NCv3: V100 16GB (NC24rs_v3 adds InfiniBand)
    _sku("Standard_NC6s_v3", V100, 1, 6, 112),
    _sku("Standard_NC12s_v3", V100, 2, 12, 224),
    _sku("Standard_NC24s_v3", V100, 4, 24, 448),
    _sku("Standard_NC24rs_v3", V100, 4, 24, 448),
    # NCasT4_v3: T4 16GB
    _sku("Standard_NC4as_T4_v3", T4, 1, 4, 28),
    _sku("Standard_NC8as_T4_v3", T4, 1, 8, 56),
    _sku("Standard_NC16as_T4_v3", T4, 1, 16, 110),
    _sku("Standard_NC64as_T4_v3", T4, 4, 64, 440),
    # NVadsA10_v5: full A10 24GB (the fractional sizes are not GPU-schedulable for KAITO)
    _sku("Standard_NV36ads_A10_v5", A10, 1, 36, 440),
    _sku("Standard_NV72ads_A10_v5", A10, 2, 72, 880),
    # NC A100 v4: A100 80GB PCIe
    _sku("Standard_NC24ads_A100_v4", A100_80, 1, 24, 220),
    _sku("Standard_NC48ads_A100_v4", A100_80, 2, 48, 440),
    _sku("Standard_NC96ads_A100_v4", A100_80, 4, 96, 880),
    # ND A100 v4: 8x A100 40GB (Azure names it Standard_ND96asr_v4, without "A100";
    # the shorthand "ND96asr_A100_v4" in notes is not a real VM size); NDm A100 v4: 8x A100 80GB
    _sku("Standard_ND96asr_v4", A100_40, 8, 96, 900),
    _sku("Standard_ND96amsr_A100_v4", A100_80, 8, 96, 1900),
    # NC H100 v5: H100 NVL 94GB
    _sku("Standard_NC40ads_H100_v5", H100_NVL, 1, 40, 320),
    _sku("Standard_NC80adis_H100_v5", H100_NVL, 2, 80, 640),
    # ND H100 v5: 8x H100 SXM 80GB; ND H200 v5: 8x H200 141GB
    _sku("Standard_ND96isr_H100_v5", H100_SXM, 8, 96, 1900),
    _sku("Standard_ND96isr_H200_v5", H200, 8, 96, 1850),
)

#: Every Azure GPU VM size kaito plans for, by name.
AKS_CATALOG: dict[str, InstanceType] = {sku.name: sku for sku in _SKUS}
