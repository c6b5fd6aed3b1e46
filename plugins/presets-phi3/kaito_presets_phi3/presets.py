"""The Phi-3 presets: where the weights are, what they weigh, and what they need.

Sources of the numbers (kept next to them):
- architecture: the publisher's ``config.json`` (hidden_size, num_hidden_layers, num_attention_heads,
  num_key_value_heads, max_position_embeddings, torch_dtype); parameter counts are computed from those
  shapes and agree with KAITO's model catalog (``modelFileSize`` 7.12Gi / 26.00Gi = parameters x 2 bytes)
  and with keras-hub's Phi-3 preset (3,821,079,552).
- revisions: KAITO ``presets/workspace/models/supported_models.yaml``, except where the file digests were
  only found for another revision (then that one is pinned, and KAITO's is named in a comment).
- requirements and vLLM options: KAITO ``presets/workspace/models/phi3/model.go``.
- file sizes and sha256: the Hub's LFS pointers as recorded by public download manifests and Hugging Face
  cache listings (blob name = sha256). Where a digest was not found it is ``None``; where a shard size was
  not found it is marked ESTIMATED (see below) and the total still equals parameters x 2 bytes.
"""

from __future__ import annotations

from kaito_core.plugins import (
    Architecture,
    GiB,
    ModelSource,
    Preset,
    Requirements,
    TuningSupport,
    WeightFile,
    WeightFormat,
)

LICENSE = "MIT"

#: The publisher's chat template (tokenizer_config.json of the Phi-3 instruct models).
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

#: Phi-3 fuses q/k/v and gate/up: these are the Linear layers LoRA adapts (modeling_phi3.py).
TUNING = TuningSupport(
    methods=("lora", "qlora"), target_modules=("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
)

#: KAITO runs Phi-3 on vLLM in float16 (phiRunParamsVLLM), which also works on V100/T4 (no bf16 there).
VLLM_DEFAULTS = {"dtype": "float16"}

# --------------------------------------------------------------------------------------- architectures

# Phi-3-mini config.json: hidden_size 3072, intermediate_size 8192, num_hidden_layers 32,
# num_attention_heads 32, num_key_value_heads 32 (no GQA), vocab_size 32064, torch_dtype bfloat16.
# head_dim = 3072 / 32 = 96. Parameters: 32 x 113,252,352 per layer + 2 x 98,500,608 (embedding,
# lm_head) + 3,072 (final norm) = 3,821,079,552.
MINI_PARAMETERS = 3_821_079_552


def _mini(context: int) -> Architecture:
    return Architecture(
        parameters=MINI_PARAMETERS,
        layers=32,
        attention_heads=32,
        kv_heads=32,
        head_dim=96,
        context_length=context,  # max_position_embeddings: 4096 (4k) or 131072 (128k, LongRoPE)
        dtype="bfloat16",
    )


# Phi-3-medium config.json: hidden_size 5120, intermediate_size 17920, num_hidden_layers 40,
# num_attention_heads 40, num_key_value_heads 10 (GQA), vocab_size 32064, torch_dtype bfloat16.
# head_dim = 5120 / 40 = 128. Parameters: 40 x 340,797,440 per layer + 2 x 164,167,680 + 5,120
# = 13,960,238,080 (KAITO's catalog: 26.00Gi of safetensors = 13.96e9 x 2 bytes).
MEDIUM_PARAMETERS = 13_960_238_080


def _medium(context: int) -> Architecture:
    return Architecture(
        parameters=MEDIUM_PARAMETERS,
        layers=40,
        attention_heads=40,
        kv_heads=10,
        head_dim=128,
        context_length=context,
        dtype="bfloat16",
    )


# --------------------------------------------------------------------------------------- weights


def _safetensors(files: tuple[WeightFile, ...]) -> WeightFormat:
    return WeightFormat(format="safetensors", quantization="bf16", files=files)


# Phi-3-mini-4k-instruct @ f39ac1d28e925b323eae81227eaba4464caced4e: sizes and sha256 of both shards
# from a public download manifest pinned to that revision, and the same sha256 again as the blob names
# of a Hugging Face cache. (KAITO pins 0a67737cc96d2554230f90338b163bc6380a2a85; no digests found for it.)
MINI_4K_SOURCE = ModelSource(
    repo="microsoft/Phi-3-mini-4k-instruct",
    revision="f39ac1d28e925b323eae81227eaba4464caced4e",
    url="https://huggingface.co/microsoft/Phi-3-mini-4k-instruct",
)
MINI_4K_SAFETENSORS = _safetensors(
    (
        WeightFile(
            "model-00001-of-00002.safetensors",
            4_972_489_328,
            "b7492726c01287bf6e13c3d74c65ade3d436d50da1cf5bb6925bc962419d6610",
        ),
        WeightFile(
            "model-00002-of-00002.safetensors",
            2_669_692_552,
            "3f311787aa136e858556caa8543015161edcad85ba81b6a36072443d7fa73c87",
        ),
    )
)

# The publisher's GGUF repository (microsoft/Phi-3-mini-4k-instruct-gguf): "q4" is Q4_K_M per its model
# card. q4: size and sha256 from three public manifests, one pinned to revision a64113399c2f…;
# fp16: size from two download logs (7,643,295,904 bytes), sha256 from two public manifests.
MINI_4K_GGUF_SOURCE = ModelSource(
    repo="microsoft/Phi-3-mini-4k-instruct-gguf",
    revision="a64113399c2f6b8ad3e11c394733a2ddadaa7f33",
    url="https://huggingface.co/microsoft/Phi-3-mini-4k-instruct-gguf",
)
MINI_4K_GGUF_FP16 = WeightFormat(
    format="gguf",
    quantization="fp16",
    files=(
        WeightFile(
            "Phi-3-mini-4k-instruct-fp16.gguf",
            7_643_295_904,
            "5d99003e395775659b0dde3f941d88ff378b2837a8dc3a2ea94222ab1420fad3",
        ),
    ),
    source=MINI_4K_GGUF_SOURCE,
)
MINI_4K_GGUF_Q4 = WeightFormat(
    format="gguf",
    quantization="Q4_K_M",
    files=(
        WeightFile(
            "Phi-3-mini-4k-instruct-q4.gguf",
            2_393_231_072,
            "8a83c7fb9049a9b2e92266fa7ad04933bb53aa1e85136b7b30f1b8000ff2edef",
        ),
    ),
    source=MINI_4K_GGUF_SOURCE,
)

# Phi-3-mini-128k-instruct has the same tensors as the 4k model (LongRoPE lives in config.json), in the
# same two shards; the shard sizes are the 4k ones (same header, same tensors). sha256: None. (A Hugging
# Face cache listing shows blobs fc534bed…8c12 and d08786c6…2bdc for some revision of this repository, but
# nothing ties them to the pinned one, so they are not used.)
MINI_128K_SOURCE = ModelSource(
    repo="microsoft/Phi-3-mini-128k-instruct",
    revision="072cb7562cb8c4adf682a8e186aaafa49469eb5d",  # KAITO supported_models.yaml
    url="https://huggingface.co/microsoft/Phi-3-mini-128k-instruct",
)
MINI_128K_SAFETENSORS = _safetensors(
    (
        WeightFile("model-00001-of-00002.safetensors", 4_972_489_328, None),
        WeightFile("model-00002-of-00002.safetensors", 2_669_692_552, None),
    )
)

# Phi-3.5-mini-instruct @ 2fe192450127e6a83f7441aef6e3ca586c338b77: sizes and sha256 from a public
# strict-cache manifest pinned to that revision. (KAITO pins 3145e03a9fd4cdd7cd953c34d9bbf7ad606122ca.)
PHI35_MINI_SOURCE = ModelSource(
    repo="microsoft/Phi-3.5-mini-instruct",
    revision="2fe192450127e6a83f7441aef6e3ca586c338b77",
    url="https://huggingface.co/microsoft/Phi-3.5-mini-instruct",
)
PHI35_MINI_SAFETENSORS = _safetensors(
    (
        WeightFile(
            "model-00001-of-00002.safetensors",
            4_972_489_328,
            "c5214cdb995ed3dd716add8d9efbfe016b76bb2f1c4c1e6c1c6a95497d7a8837",
        ),
        WeightFile(
            "model-00002-of-00002.safetensors",
            2_669_692_552,
            "41246eed2b75b66526339c5d32d6f7acdefe0bd24180f97c74303f4656877344",
        ),
    )
)


def _estimated_shards(total: int, count: int) -> tuple[WeightFile, ...]:
    """ESTIMATED shard sizes: ``total`` split evenly (the per-shard sizes were not found; sha256 None).

    The total is exact for the tensors (parameters x 2 bytes); each file adds a small JSON header.
    The artifact packer measures the real files, so these numbers only feed the memory math.
    """
    base, rest = divmod(total, count)
    return tuple(
        WeightFile(f"model-{i:05d}-of-{count:05d}.safetensors", base + (rest if i == count else 0), None)
        for i in range(1, count + 1)
    )


# Phi-3-medium (4k and 128k): six shards (model-0000N-of-00006.safetensors, per the repositories).
MEDIUM_SAFETENSORS = _safetensors(_estimated_shards(MEDIUM_PARAMETERS * 2, 6))
MEDIUM_4K_SOURCE = ModelSource(
    repo="microsoft/Phi-3-medium-4k-instruct",
    revision="b64223aaea6fbf273c0c8cd0801d5e732dce8897",  # KAITO supported_models.yaml
    url="https://huggingface.co/microsoft/Phi-3-medium-4k-instruct",
)
MEDIUM_128K_SOURCE = ModelSource(
    repo="microsoft/Phi-3-medium-128k-instruct",
    revision="fa7d2aa4f5ea69b2e36b20d050cdae79c9bfbb3f",  # KAITO supported_models.yaml
    url="https://huggingface.co/microsoft/Phi-3-medium-128k-instruct",
)

# --------------------------------------------------------------------------------------- requirements

# KAITO phi3/model.go: one GPU; total GPU memory 9Gi (mini), 8Gi (3.5-mini), 28Gi (medium); no per-GPU
# requirement ("0Gi"); disk 70Gi (mini) / 100Gi (medium).
MINI_REQUIREMENTS = Requirements(gpu_count=1, total_gpu_memory=9 * GiB, per_gpu_memory=0, disk=70 * GiB)
PHI35_REQUIREMENTS = Requirements(gpu_count=1, total_gpu_memory=8 * GiB, per_gpu_memory=0, disk=70 * GiB)
MEDIUM_REQUIREMENTS = Requirements(gpu_count=1, total_gpu_memory=28 * GiB, per_gpu_memory=0, disk=100 * GiB)


def _preset(
    name: str,
    source: ModelSource,
    formats: tuple[WeightFormat, ...],
    architecture: Architecture,
    requirements: Requirements,
    description: str,
) -> Preset:
    runtimes = ("vllm", "llamacpp") if any(f.format == "gguf" for f in formats) else ("vllm",)
    defaults = {runtime: dict(VLLM_DEFAULTS) if runtime == "vllm" else {} for runtime in runtimes}
    return Preset(
        name=name,
        family="phi3",
        source=source,
        formats=formats,
        architecture=architecture,
        requirements=requirements,
        runtimes=runtimes,
        default_runtime="vllm",
        license=LICENSE,
        chat_template=PHI3_CHAT_TEMPLATE,
        # the 4k models serve their whole window; the 128k ones as much as fits (the planner shortens it)
        max_model_len=architecture.context_length if architecture.context_length <= 4096 else None,
        runtime_defaults=defaults,
        tuning=TUNING,
        distributed_inference=False,  # KAITO: SupportDistributedInference() is false for Phi-3
        description=description,
    )


PRESETS: tuple[Preset, ...] = (
    _preset(
        "phi-3-mini-4k-instruct",
        MINI_4K_SOURCE,
        (MINI_4K_SAFETENSORS, MINI_4K_GGUF_FP16, MINI_4K_GGUF_Q4),
        _mini(4096),
        MINI_REQUIREMENTS,
        "Phi-3-mini, 3.8B parameters, 4K context; also as the publisher's GGUF (fp16, Q4_K_M) for llama.cpp",
    ),
    _preset(
        "phi-3-mini-128k-instruct",
        MINI_128K_SOURCE,
        (MINI_128K_SAFETENSORS,),
        _mini(131072),
        MINI_REQUIREMENTS,
        "Phi-3-mini, 3.8B parameters, 128K context (LongRoPE)",
    ),
    _preset(
        "phi-3-medium-4k-instruct",
        MEDIUM_4K_SOURCE,
        (MEDIUM_SAFETENSORS,),
        _medium(4096),
        MEDIUM_REQUIREMENTS,
        "Phi-3-medium, 14B parameters, 4K context",
    ),
    _preset(
        "phi-3-medium-128k-instruct",
        MEDIUM_128K_SOURCE,
        (MEDIUM_SAFETENSORS,),
        _medium(131072),
        MEDIUM_REQUIREMENTS,
        "Phi-3-medium, 14B parameters, 128K context",
    ),
    _preset(
        "phi-3.5-mini-instruct",
        PHI35_MINI_SOURCE,
        (PHI35_MINI_SAFETENSORS,),
        _mini(131072),
        PHI35_REQUIREMENTS,
        "Phi-3.5-mini, 3.8B parameters, 128K context, multilingual",
    ),
)

PRESETS_BY_NAME = {preset.name: preset for preset in PRESETS}
