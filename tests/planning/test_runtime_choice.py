"""Which runtime the planner picks, and why: big GPU, small GPU, CPU only, annotation, missing plugins.

Numbers for phi-3-mini-4k-instruct (GiB): safetensors 7.12 (x1.02 = 7.26); GGUF fp16 7.118, Q4_K_M 2.229;
f16 KV cache 0.375 MiB/token (4096 tokens = 1.5, 2048 = 0.75); test llama.cpp overhead 0.5.
"""

from __future__ import annotations

from typing import Any

import pytest
from kaito_provisioner_aks.catalog import AKS_CATALOG

from kaito_core.planning import Hardware, PlanError, plan_workspace
from kaito_core.plugins import GiB

MINI = "phi-3-mini-4k-instruct"


def test_big_gpu_plans_vllm(plan_registry: Any, workspace: Any) -> None:
    plan = plan_workspace(
        workspace(MINI, "Standard_NC24ads_A100_v4"),
        plan_registry,
        Hardware.from_instance_type(AKS_CATALOG["Standard_NC24ads_A100_v4"]),
    )
    assert plan.runtime == "vllm"
    assert plan.weights_format == "safetensors"
    assert plan.image == "registry.test/kaito-vllm:1"
    assert plan.runtime_reason.startswith("vllm is the preset's default runtime and fits")
    assert plan.dtype == "float16"  # KAITO's Phi-3 vLLM default
    assert "dtype" not in plan.runtime_options
    assert plan.chat_template is not None and "<|assistant|>" in plan.chat_template


def test_small_gpu_falls_back_to_llamacpp_on_the_gpu(plan_registry: Any, workspace: Any, nodes: Any) -> None:
    # 1x 8 GiB GPU: KAITO's check 8 < 9 rejects vLLM; llama.cpp: 0.9 x 8 = 7.2 usable;
    # fp16 7.118 + 1.5 + 0.5 = 9.12 > 7.2; Q4_K_M 2.229 + 1.5 + 0.5 = 4.23 <= 7.2 -> Q4_K_M, all on the GPU.
    hardware = Hardware.from_nodes([nodes.gpu("rtx", product="NVIDIA-GeForce-RTX-3070", memory_mib="8192")])
    plan = plan_workspace(workspace(MINI, None), plan_registry, hardware)
    assert (plan.runtime, plan.quantization, plan.n_gpu_layers) == ("llamacpp", "Q4_K_M", -1)
    assert plan.resources.gpu == 1 and plan.threads == 0
    assert "vllm does not fit: Insufficient total GPU memory" in plan.runtime_reason
    assert plan.files[0].name == "Phi-3-mini-4k-instruct-q4.gguf"


def test_cpu_only_machine_gets_the_largest_gguf_that_fits(plan_registry: Any, workspace: Any) -> None:
    # 32 GiB x 0.8 = 25.6 usable: fp16 7.118 + 1.5 + 0.5 = 9.12 fits -> fp16 (the largest).
    plan = plan_workspace(workspace(MINI, None), plan_registry, Hardware.cpu_only(8, 32 * GiB))
    assert (plan.runtime, plan.quantization, plan.n_gpu_layers, plan.threads) == ("llamacpp", "fp16", 0, 8)
    assert plan.resources.cpu == "8" and plan.resources.gpu == 0
    assert plan.resources.memory == f"{-(-plan.memory.required // 2**20)}Mi"  # type: ignore[union-attr]
    assert "vllm does not fit" in plan.runtime_reason and "needs an NVIDIA GPU" in plan.runtime_reason


def test_smaller_machine_gets_a_smaller_quantization(plan_registry: Any, workspace: Any) -> None:
    # 8 GiB x 0.8 = 6.4: fp16 9.12 no; Q4_K_M 4.23 yes.
    plan = plan_workspace(workspace(MINI, None), plan_registry, Hardware.cpu_only(4, 8 * GiB))
    assert (plan.runtime, plan.quantization) == ("llamacpp", "Q4_K_M")


def test_nothing_fits_a_tiny_machine(plan_registry: Any, workspace: Any) -> None:
    # 2 GiB x 0.8 = 1.6 < Q4_K_M at the smallest context, 2.229 + 0.75 + 0.5 = 3.48.
    with pytest.raises(PlanError) as error:
        plan_workspace(workspace(MINI, None), plan_registry, Hardware.cpu_only(2, 2 * GiB))
    message = str(error.value)
    assert "vllm: vllm needs an NVIDIA GPU" in message
    assert "smallest GGUF (Q4_K_M, 2.23Gi)" in message and "2048 tokens" in message


def test_gemma_270m_local_plans_llamacpp_on_the_cpu(plan_registry: Any, workspace: Any) -> None:
    plan = plan_workspace(workspace("gemma-3-270m", None), plan_registry, Hardware.local(2, 24 * GiB))
    assert (plan.runtime, plan.weights_format, plan.quantization) == ("llamacpp", "gguf", "Q4_K_M")
    assert (plan.n_gpu_layers, plan.threads, plan.node_count, plan.gpus_per_node) == (0, 2, 1, 0)
    assert plan.context_length == 8192
    assert plan.chat_template is not None and "<start_of_turn>" in plan.chat_template
    assert plan.files[0].size == 253_113_024


def test_annotation_chooses_the_runtime(plan_registry: Any, workspace: Any) -> None:
    ws = workspace(MINI, "Standard_NC24ads_A100_v4", annotations={"kaito.sh/runtime": "llamacpp"})
    plan = plan_workspace(
        ws, plan_registry, Hardware.from_instance_type(AKS_CATALOG["Standard_NC24ads_A100_v4"])
    )
    assert (plan.runtime, plan.quantization, plan.n_gpu_layers) == ("llamacpp", "fp16", -1)
    assert plan.runtime_reason.startswith("the kaito.sh/runtime annotation asks for llamacpp")


def test_annotation_with_an_unsupported_runtime_is_refused(plan_registry: Any, workspace: Any) -> None:
    ws = workspace("phi-3-medium-4k-instruct", annotations={"kaito.sh/runtime": "transformers"})
    with pytest.raises(
        PlanError, match="asks for runtime 'transformers', but preset phi-3-medium-4k-instruct supports vllm"
    ):
        plan_workspace(
            ws, plan_registry, Hardware.from_instance_type(AKS_CATALOG["Standard_NC24ads_A100_v4"])
        )


def test_an_installed_runtime_is_preferred_to_a_missing_default(
    make_registry: Any, workspace: Any, test_runtimes: Any
) -> None:
    registry = make_registry(runtimes=(test_runtimes["llamacpp"],))
    plan = plan_workspace(
        workspace(MINI, "Standard_NC24ads_A100_v4"),
        registry,
        Hardware.from_instance_type(AKS_CATALOG["Standard_NC24ads_A100_v4"]),
    )
    assert (plan.runtime, plan.quantization, plan.n_gpu_layers) == ("llamacpp", "fp16", -1)
    assert plan.runtime_reason.startswith("vllm is not installed; llamacpp fits")


def test_missing_runtime_plugin_is_named(make_registry: Any, workspace: Any) -> None:
    registry = make_registry(runtimes=())
    plan = plan_workspace(
        workspace(MINI, "Standard_NC6s_v3"),
        registry,
        Hardware.from_instance_type(AKS_CATALOG["Standard_NC6s_v3"]),
    )
    assert plan.runtime == "vllm" and plan.image == ""
    assert (
        "no runtime plugin named 'vllm' is installed (pip install kaito-runtime-vllm)" in plan.runtime_reason
    )
    # the documented default overhead (2.3 GiB) was used: same numbers as with the plugin
    assert plan.memory is not None and plan.memory.notes[2].startswith("reserve per GPU: 2.30Gi")


def test_unknown_preset(plan_registry: Any, workspace: Any) -> None:
    with pytest.raises(PlanError, match="Unsupported inference preset name llama-9"):
        plan_workspace(workspace("llama-9"), plan_registry, Hardware.cpu_only(2, 8 * GiB))


def test_gemma_4b_on_t4_runs_float16(plan_registry: Any, workspace: Any) -> None:
    # T4 has compute capability 7.5: no bf16, so the preset's bfloat16 becomes float16 (said in the reason).
    plan = plan_workspace(
        workspace("gemma-3-4b-instruct", "Standard_NC4as_T4_v3"),
        plan_registry,
        Hardware.from_instance_type(AKS_CATALOG["Standard_NC4as_T4_v3"]),
    )
    assert plan.dtype == "float16" and "has no bf16" in plan.runtime_reason
    a100 = plan_workspace(
        workspace("gemma-3-4b-instruct", "Standard_NC24ads_A100_v4"),
        plan_registry,
        Hardware.from_instance_type(AKS_CATALOG["Standard_NC24ads_A100_v4"]),
    )
    assert a100.dtype == "bfloat16"


def test_deprecated_preset_is_refused(make_registry: Any, workspace: Any) -> None:
    import dataclasses

    from kaito_presets_phi3 import PRESETS_BY_NAME

    old = dataclasses.replace(PRESETS_BY_NAME[MINI], name="phi-3-old", deprecated=True)
    with pytest.raises(PlanError, match="Model phi-3-old is deprecated and no longer supported"):
        plan_workspace(workspace("phi-3-old"), make_registry(presets=(old,)), Hardware.cpu_only(8, 32 * GiB))
