"""A PEFT LoRA adapter (``adapter_config.json`` + ``adapter_model.safetensors``) as a GGUF LoRA for llama.cpp.

The format is the one llama.cpp's ``convert_lora_to_gguf.py`` writes and ``llama_adapter_lora_init``
reads: ``general.type = "adapter"``, ``general.architecture`` equal to the base model's,
``adapter.type = "lora"``, ``adapter.lora.alpha``, and for every adapted weight ``<gguf name>.lora_a``
(numpy shape ``(r, in)``, ggml ``ne = [in, r]``) and ``<gguf name>.lora_b`` (``(out, r)``, ``ne = [r, out]``)
in f32. Names go through gguf's ``TensorNameMap`` for the base model's architecture, as the base weights
did when they were converted.

llama.cpp scales each pair by ``alpha / r`` (r read from the tensor) times the adapter's scale. PEFT's
own scale can differ per module (``alpha_pattern``, ``rank_pattern``, ``use_rslora``'s ``alpha/sqrt(r)``):
the ratio is folded into ``lora_b``, so the product is exact.

convert_hf_to_gguf.py permutes the rows of ``q_proj`` and ``k_proj`` for the ``llama`` architecture
(``LlamaModel.permute``, from Hugging Face's rotary layout back to llama.cpp's); the LoRA delta
``B @ A`` of those weights must be permuted the same way, which is a permutation of ``B``'s rows. Gemma,
Qwen2 and Qwen3 are converted without it (their ``modify_tensors`` only renames linear weights).

The base model's metadata and tensor shapes come from its GGUF header (gguf's reader maps the file; no
weights are read), so every mismatch is refused here with the tensor's name instead of by llama.cpp.
Tensors are read from safetensors without torch (bf16 widened to f32 by hand: numpy has no bf16).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Bumped when the output of a conversion changes, so cached conversions are redone.
CONVERTER_VERSION = "1"
#: Architectures (the GGUF's general.architecture) whose PEFT adapters convert, and whether
#: convert_hf_to_gguf.py permuted their q/k rows.
SUPPORTED: dict[str, bool] = {
    "llama": True,
    "gemma": False,
    "gemma2": False,
    "gemma3": False,
    "qwen2": False,
    "qwen3": False,
}
#: PEFT config keys that change what the weights mean in ways a GGUF LoRA cannot say.
_REFUSED_FLAGS = {
    "use_dora": "DoRA (use_dora) has a magnitude vector llama.cpp's LoRA does not apply",
    "lora_bias": "lora_bias adds a bias to lora_B, which llama.cpp's LoRA does not apply",
    "fan_in_fan_out": "fan_in_fan_out (GPT-2 Conv1D layers) is not a layout llama.cpp models use",
    "use_qalora": "QA-LoRA pools its input, which llama.cpp's LoRA does not do",
}
_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


class LoraConversionError(ValueError):
    """The adapter cannot be converted; the message names the field or tensor and the reason."""


@dataclass(frozen=True)
class BaseModelInfo:
    """What a conversion needs of the base model, read from its GGUF header."""

    arch: str
    n_blocks: int
    n_head: int
    n_head_kv: int
    shapes: Mapping[str, tuple[int, ...]]  # GGUF tensor name -> ggml ne (e.g. [in, out])

    @classmethod
    def read(cls, gguf_path: Path) -> BaseModelInfo:
        from gguf import GGUFReader

        reader = GGUFReader(str(gguf_path))

        def field(key: str, default: Any = None) -> Any:
            f = reader.fields.get(key)
            if f is None or not f.data:
                return default
            part = f.parts[f.data[0]]
            if f.types and f.types[0].name == "STRING":
                return bytes(part).decode("utf-8")
            return part.tolist()[0]

        arch = field("general.architecture")
        if not isinstance(arch, str):
            raise LoraConversionError(f"{gguf_path} has no general.architecture")
        n_head = int(field(f"{arch}.attention.head_count", 0) or 0)
        return cls(
            arch=arch,
            n_blocks=int(field(f"{arch}.block_count", 0) or 0),
            n_head=n_head,
            n_head_kv=int(field(f"{arch}.attention.head_count_kv", n_head) or n_head),
            shapes={t.name: tuple(int(d) for d in t.shape) for t in reader.tensors},
        )


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a float32 array (F32, F16, BF16, F64)."""
    data = path.read_bytes()
    if len(data) < 8:
        raise LoraConversionError(f"{path} is not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError as exc:
        raise LoraConversionError(f"{path} is not a safetensors file: {exc}") from exc
    base = 8 + size
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start : base + end]
        shape = tuple(info["shape"])
        dtype = info["dtype"]
        if dtype == "BF16":
            array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in _DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
        else:
            raise LoraConversionError(f"{path}: tensor {name} has dtype {dtype}; LoRA weights are floats")
        tensors[name] = array.reshape(shape).astype(np.float32)
    return tensors


def _matches(pattern: str, module: str) -> bool:
    """PEFT's rule for rank_pattern/alpha_pattern keys: the pattern matches the module name's tail."""
    return re.match(rf"(.*\.)?({pattern})$", module) is not None


def _module_alpha(config: Mapping[str, Any], module: str) -> float:
    for pattern, alpha in (config.get("alpha_pattern") or {}).items():
        if _matches(pattern, module):
            return float(alpha)
    return float(config["lora_alpha"])


def permute_rows(weights: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's ``LlamaModel.permute`` of a weight's rows (here: lora_B, shape (out, r))."""
    rows = weights.shape[0]
    split = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    return split.swapaxes(1, 2).reshape(weights.shape)


def check_config(config: Mapping[str, Any]) -> None:
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise LoraConversionError(f"peft_type {config.get('peft_type')!r}: only LoRA adapters convert")
    for key, why in _REFUSED_FLAGS.items():
        if config.get(key):
            raise LoraConversionError(f"{key}: {why}; train the adapter without it")
    if config.get("bias", "none") != "none":
        raise LoraConversionError(f"bias {config['bias']!r}: trained biases do not convert; use bias: none")
    if config.get("modules_to_save"):
        raise LoraConversionError(
            f"modules_to_save {config['modules_to_save']}: fully trained modules (e.g. embeddings, heads) "
            "are not a LoRA llama.cpp can apply; train without modules_to_save"
        )
    if config.get("target_parameters"):
        raise LoraConversionError("target_parameters: LoRA on raw parameters (MoE experts) does not convert")
    if config.get("megatron_config"):
        raise LoraConversionError("megatron_config: Megatron-parallel LoRA layers do not convert")
    if "lora_alpha" not in config:
        raise LoraConversionError("adapter_config.json has no lora_alpha")


def convert(adapter_dir: Path, base: BaseModelInfo, out: Path) -> Path:
    """Write the GGUF LoRA of the PEFT adapter in ``adapter_dir`` for ``base`` to ``out`` (atomically)."""
    import gguf

    if base.arch not in SUPPORTED:
        raise LoraConversionError(
            f"the base model's architecture {base.arch!r} has no PEFT -> GGUF LoRA conversion here "
            f"(supported: {', '.join(sorted(SUPPORTED))}); convert the adapter with llama.cpp's "
            "convert_lora_to_gguf.py and give the .gguf file instead"
        )
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    check_config(config)
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise LoraConversionError(
            f"{adapter_dir} has no adapter_model.safetensors (pickled adapter_model.bin is not read)"
        )
    tensors = read_safetensors(weights)
    arch_id = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == base.arch)
    names = gguf.get_tensor_name_map(arch_id, base.n_blocks)
    pairs = _pairs(tensors)
    part = out.with_name(out.name + ".part")
    try:
        _write(gguf, config, pairs, names, base, part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    return out


def _write(
    gguf: Any,
    config: Mapping[str, Any],
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    names: Any,
    base: BaseModelInfo,
    part: Path,
) -> None:
    alpha = float(config["lora_alpha"])
    rslora = bool(config.get("use_rslora"))
    writer = gguf.GGUFWriter(str(part), base.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for module, (lora_a, lora_b) in sorted(pairs.items()):
        target = names.get_name(module + ".weight", try_suffixes=(".weight", ".bias"))
        if target is None or target not in base.shapes:
            raise LoraConversionError(
                f"adapter tensor {module}: no weight of the base model ({base.arch}) matches it"
                + (f" (it maps to {target}, which this GGUF lacks: tied embeddings?)" if target else "")
            )
        rank = lora_a.shape[0]
        if lora_a.ndim != 2 or lora_b.ndim != 2 or lora_b.shape[1] != rank:
            raise LoraConversionError(
                f"adapter tensor {module}: lora_A {lora_a.shape} and lora_B {lora_b.shape} do not pair"
            )
        ne = base.shapes[target]
        if (lora_a.shape[1], lora_b.shape[0]) != (ne[0], ne[1]):
            raise LoraConversionError(
                f"adapter tensor {module}: adapts a {lora_b.shape[0]}x{lora_a.shape[1]} weight, but "
                f"{target} is {ne[1]}x{ne[0]} (an adapter for another model?)"
            )
        module_alpha = _module_alpha(config, module)
        wanted = module_alpha / (math.sqrt(rank) if rslora else rank)
        applied = alpha / rank if alpha else 1.0  # llama.cpp's scale for this pair at strength 1
        if wanted != applied:
            lora_b = lora_b * np.float32(wanted / applied)
        if SUPPORTED[base.arch]:
            if module.endswith("q_proj"):
                lora_b = permute_rows(lora_b, base.n_head)
            elif module.endswith("k_proj"):
                lora_b = permute_rows(lora_b, base.n_head_kv)
        # llama.cpp pairs "<base tensor name>.lora_a" with "<base tensor name>.lora_b"
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(lora_a, dtype=np.float32))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(lora_b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _pairs(tensors: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """HF module name (``model.layers.0.self_attn.q_proj``) -> (lora_A, lora_B); anything else refused."""
    a: dict[str, np.ndarray] = {}
    b: dict[str, np.ndarray] = {}
    for name, tensor in tensors.items():
        module = name.removeprefix("base_model.model.")
        # the text model of a multimodal checkpoint (Gemma3ForConditionalGeneration), as
        # convert_lora_to_gguf.py maps it
        for prefix, replacement in (("model.language_model.", "model."), ("language_model.", "")):
            if module.startswith(prefix):
                module = replacement + module.removeprefix(prefix)
                break
        if "lora_embedding_" in module:
            raise LoraConversionError(f"adapter tensor {name}: LoRA on embeddings does not convert here")
        if module.endswith(".lora_A.weight"):
            a[module.removesuffix(".lora_A.weight")] = tensor
        elif module.endswith(".lora_B.weight"):
            b[module.removesuffix(".lora_B.weight")] = tensor
        else:
            raise LoraConversionError(
                f"adapter tensor {name} is not a lora_A/lora_B weight (trained embeddings, norms or "
                "biases do not convert)"
            )
    unpaired = sorted(a.keys() ^ b.keys())
    if unpaired:
        raise LoraConversionError(f"adapter tensor {unpaired[0]}: lora_A and lora_B must both be present")
    if not a:
        raise LoraConversionError("the adapter has no LoRA tensors")
    return {module: (a[module], b[module]) for module in a}


def digest(adapter_dir: Path, base: BaseModelInfo) -> str:
    """What a conversion depends on: the adapter's two files, the base model's shape, this converter."""
    h = hashlib.sha256(CONVERTER_VERSION.encode())
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        with (adapter_dir / name).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(f"{base.arch}/{base.n_blocks}/{base.n_head}/{base.n_head_kv}".encode())
    return h.hexdigest()


def cache_dirs(configured: str | None) -> list[Path]:
    """Where a converted adapter is kept, in order of preference: the configured directory (the runtime
    option ``adapter_cache``); ``$KAITO_HOME/lora-gguf`` (default ``~/.cache/kaito``, kaito's local state:
    a second ``kaito run`` converts nothing); else the temp directory (a pod's home may be read-only).
    Never beside the adapter: a pod mounts adapters read-only, and a hostPath adapter is the user's."""
    if configured:
        return [Path(configured)]
    home = Path(os.environ.get("KAITO_HOME") or Path.home() / ".cache" / "kaito")
    return [home / "lora-gguf", Path(tempfile.gettempdir()) / "kaito-lora-gguf"]


def converted(adapter_dir: Path, base_gguf: Path, cache: str | None = None) -> Path:
    """The GGUF LoRA of a PEFT adapter directory for the base model ``base_gguf``, converted once per
    adapter content and kept in a cache directory (see :func:`cache_dirs`)."""
    base = BaseModelInfo.read(base_gguf)
    key = digest(adapter_dir, base)[:32]
    failures = []
    for directory in cache_dirs(cache):
        target = directory / f"{adapter_dir.name}-{key}.gguf"
        if target.is_file():
            return target
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return convert(adapter_dir, base, target)
        except OSError as exc:  # read-only or full: the next place
            failures.append(f"{directory}: {exc}")
    raise LoraConversionError(f"nowhere to write the converted adapter: {'; '.join(failures)}")
