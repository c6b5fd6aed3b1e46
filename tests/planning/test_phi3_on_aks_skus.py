"""Each Phi-3 preset on each Azure SKU: fits or not, at what context, on how many GPUs.

The expectations are worked out by hand from KAITO's estimator (docs/planning.md), GiB throughout:

    M      = safetensors x 1.02            mini: 7.1173 x 1.02 = 7.2597    medium: 26.0030 x 1.02 = 26.5231
    avail  = GPU memory x 0.84 (A10: 0.82)  V100/T4 16 -> 13.44, A10 24 -> 19.68, A100-40 -> 33.60,
                                            A100-80 -> 67.20, H100 94 -> 78.96, H100 80 -> 67.20,
                                            H200 141 -> 118.44
    KV/token: mini 2x32x32x96x2 = 393,216 B (0.375 MiB: 4096 tok = 1.5, 131072 tok = 48)
              medium 2x40x10x128x2 = 204,800 B (4096 tok = 0.78125, 131072 tok = 25)
    reserve = 2.3 + ctx x KV/token / n     left = (avail - reserve) / 1.05
    fits on one node of n GPUs  <=>  floor(M / left) + 1 <= n  <=>  left > M / n
    KAITO's admission check first: n x GPU memory >= 9 (mini), 8 (3.5-mini), 28 (medium).

Contexts: the 4k models start at 4096; the 128k models at 131072 and halve (down to 2048) until they fit.
"""

from __future__ import annotations

from typing import Any

import pytest
from kaito_provisioner_aks.catalog import AKS_CATALOG

from kaito_core.planning import Hardware, PlanError, plan_workspace

MINI4K, MINI128K, MED4K, MED128K, PHI35 = (
    "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
)
INSUFFICIENT = "Insufficient total GPU memory"
NOT_DISTRIBUTED = "cannot be distributed across more than 1 GPU node"

# SKU -> {preset: expected context (fits) | error text (does not fit)}
EXPECTED: dict[str, dict[str, Any]] = {
    # 1x V100 16 (avail 13.44). mini-4k: reserve 2.3+1.5 = 3.8, left 9.18 > 7.26 -> 4096.
    # mini-128k / 3.5: 131072..32768 reserve >= 14.3 > 13.44; 16384: 8.3 -> left 4.90 < 7.26;
    #   8192: 5.3 -> left 7.75 > 7.26 -> 8192. medium: 16 < 28.
    "Standard_NC6s_v3": {
        MINI4K: 4096,
        MINI128K: 8192,
        PHI35: 8192,
        MED4K: INSUFFICIENT,
        MED128K: INSUFFICIENT,
    },
    # 2x V100 (M/n: mini 3.63, medium 13.26). mini-128k: 65536 reserve 2.3+12 = 14.3 > avail;
    #   32768: 2.3+6 = 8.3 -> left 4.90 > 3.63 -> 32768.
    # medium-4k: 32 >= 28; 4096: 2.3+0.39 = 2.69 -> left 10.24 < 13.26; 2048: left 10.42 < 13.26 -> needs
    #   floor(26.52/10.42)+1 = 3 GPUs = 2 nodes, and Phi-3 is not distributed. medium-128k: even worse.
    "Standard_NC12s_v3": {
        MINI4K: 4096,
        MINI128K: 32768,
        PHI35: 32768,
        MED4K: NOT_DISTRIBUTED,
        MED128K: NOT_DISTRIBUTED,
    },
    # 4x V100 (M/n: mini 1.81, medium 6.63). mini-128k: 131072 2.3+12 = 14.3 > avail; 65536: 2.3+6 = 8.3
    #   -> left 4.90 > 1.81 -> 65536. medium-4k: 2.3+0.195 -> left 10.42 > 6.63 -> 4096.
    #   medium-128k: 131072: 2.3+6.25 = 8.55 -> left 4.66 < 6.63; 65536: 2.3+3.125 -> left 7.63 -> 65536.
    "Standard_NC24s_v3": {MINI4K: 4096, MINI128K: 65536, PHI35: 65536, MED4K: 4096, MED128K: 65536},
    "Standard_NC24rs_v3": {MINI4K: 4096, MINI128K: 65536, PHI35: 65536, MED4K: 4096, MED128K: 65536},
    # 1x T4 16: the same arithmetic as one V100.
    "Standard_NC4as_T4_v3": {
        MINI4K: 4096,
        MINI128K: 8192,
        PHI35: 8192,
        MED4K: INSUFFICIENT,
        MED128K: INSUFFICIENT,
    },
    "Standard_NC8as_T4_v3": {
        MINI4K: 4096,
        MINI128K: 8192,
        PHI35: 8192,
        MED4K: INSUFFICIENT,
        MED128K: INSUFFICIENT,
    },
    "Standard_NC16as_T4_v3": {
        MINI4K: 4096,
        MINI128K: 8192,
        PHI35: 8192,
        MED4K: INSUFFICIENT,
        MED128K: INSUFFICIENT,
    },
    # 4x T4: the same arithmetic as four V100s.
    "Standard_NC64as_T4_v3": {MINI4K: 4096, MINI128K: 65536, PHI35: 65536, MED4K: 4096, MED128K: 65536},
    # 1x A10 24 (avail 19.68). mini-128k: 32768: 2.3+12 = 14.3 -> left 5.12 < 7.26; 16384: 2.3+6 = 8.3 ->
    #   left 10.84 -> 16384. medium: 24 < 28.
    "Standard_NV36ads_A10_v5": {
        MINI4K: 4096,
        MINI128K: 16384,
        PHI35: 16384,
        MED4K: INSUFFICIENT,
        MED128K: INSUFFICIENT,
    },
    # 2x A10 (M/n: mini 3.63, medium 13.26). mini-128k: 65536: 2.3+12 = 14.3 -> left 5.12 > 3.63 -> 65536.
    #   medium-4k: 2.3+0.39 = 2.69 -> left 16.18 -> 4096. medium-128k: 65536: 2.3+6.25 -> left 10.60 < 13.26;
    #   32768: 2.3+3.125 = 5.425 -> left 13.58 > 13.26 -> 32768.
    "Standard_NV72ads_A10_v5": {MINI4K: 4096, MINI128K: 65536, PHI35: 65536, MED4K: 4096, MED128K: 32768},
    # 1x A100 80 (avail 67.2): mini-128k at 131072: 2.3+48 -> left 16.1 > 7.26; medium-128k: 2.3+25 = 27.3
    #   -> left 37.9 > 26.52: everything at full context. More GPUs only add room.
    "Standard_NC24ads_A100_v4": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
    "Standard_NC48ads_A100_v4": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
    "Standard_NC96ads_A100_v4": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
    # 8x A100 40 (avail 33.6): mini-128k 2.3+48/8 = 8.3 -> left 24.1; medium-128k 2.3+25/8 -> left 26.8.
    "Standard_ND96asr_v4": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
    "Standard_ND96amsr_A100_v4": {
        MINI4K: 4096,
        MINI128K: 131072,
        PHI35: 131072,
        MED4K: 4096,
        MED128K: 131072,
    },
    # 1x H100 94 (avail 78.96): mini-128k 50.3 -> left 27.3; medium-128k 27.3 -> left 49.2.
    "Standard_NC40ads_H100_v5": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
    "Standard_NC80adis_H100_v5": {
        MINI4K: 4096,
        MINI128K: 131072,
        PHI35: 131072,
        MED4K: 4096,
        MED128K: 131072,
    },
    "Standard_ND96isr_H100_v5": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
    "Standard_ND96isr_H200_v5": {MINI4K: 4096, MINI128K: 131072, PHI35: 131072, MED4K: 4096, MED128K: 131072},
}

CASES = [(sku, preset, expected) for sku, row in EXPECTED.items() for preset, expected in row.items()]


def test_the_table_covers_every_sku_of_the_catalog() -> None:
    assert set(EXPECTED) == set(AKS_CATALOG)


@pytest.mark.parametrize(("sku", "preset", "expected"), CASES, ids=[f"{s}-{p}" for s, p, _ in CASES])
def test_phi3_preset_on_sku(plan_registry: Any, workspace: Any, sku: str, preset: str, expected: Any) -> None:
    instance = AKS_CATALOG[sku]
    hardware = Hardware.from_instance_type(instance, 1)
    if isinstance(expected, int):
        plan = plan_workspace(workspace(preset, sku), plan_registry, hardware)
        assert plan.runtime == "vllm"
        assert plan.context_length == expected
        assert (plan.node_count, plan.gpus_per_node, plan.tensor_parallel) == (
            1,
            instance.gpu_count,
            instance.gpu_count,
        )
        assert plan.resources.gpu == instance.gpu_count
        assert plan.memory is not None and plan.memory.required <= plan.memory.available
    else:
        with pytest.raises(PlanError) as error:
            plan_workspace(workspace(preset, sku), plan_registry, hardware)
        assert expected in str(error.value)
        if expected == INSUFFICIENT:
            assert str(error.value).startswith(
                f"Insufficient total GPU memory: Instance type {sku} has a total of "
                f"{instance.total_gpu_memory // 2**30}Gi, but preset {preset} requires at least "
            )
