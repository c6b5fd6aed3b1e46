"""A small Hugging Face Llama model directory as a GGUF llama.cpp loads: for tests only.

What llama.cpp's convert_hf_to_gguf.py does for ``LlamaForCausalLM``, reduced to what the tiny test
models use: f32 tensors named through gguf's ``TensorNameMap``, the q/k rows permuted from Hugging
Face's rotary layout to llama.cpp's (``LlamaModel.permute``), the hyperparameters llama.cpp reads, and a
byte-level BPE tokenizer as ``tokenizer.ggml.model = "gpt2"`` with its merges. No quantization, no
other architecture, no sentencepiece: a test that needs more uses a real GGUF.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    rows = weights.shape[0]
    split = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    return split.swapaxes(1, 2).reshape(weights.shape)


def convert_llama(model_dir: Path, out: Path) -> Path:
    """Write ``model_dir`` (config.json, model.safetensors, tokenizer.json) as an f32 GGUF at ``out``."""
    import gguf
    from safetensors.numpy import load_file

    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    kind = config.get("architectures")
    if kind != ["LlamaForCausalLM"]:
        raise ValueError(f"{model_dir}: only LlamaForCausalLM converts here, not {kind}")
    n_layer, n_head = config["num_hidden_layers"], config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads", n_head)
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    rope = config.get("rope_parameters") or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _tokenizer(writer, model_dir, config)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    for name, tensor in sorted(load_file(str(model_dir / "model.safetensors")).items()):
        if name.endswith("rotary_emb.inv_freq"):
            continue
        if name.endswith("q_proj.weight"):
            tensor = _permute(tensor, n_head)
        elif name.endswith("k_proj.weight"):
            tensor = _permute(tensor, n_head_kv)
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ValueError(f"{model_dir}: no GGUF name for {name}")
        writer.add_tensor(target, np.ascontiguousarray(tensor, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _tokenizer(writer: Any, model_dir: Path, config: dict[str, Any]) -> None:
    import gguf

    spec = json.loads((model_dir / "tokenizer.json").read_text())
    if spec["model"]["type"] != "BPE":
        raise ValueError(f"{model_dir}: only byte-level BPE tokenizers convert here")
    vocab: dict[str, int] = dict(spec["model"]["vocab"])
    special = {t["content"] for t in spec.get("added_tokens", []) if t.get("special")}
    for added in spec.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
    size = max(config["vocab_size"], max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for text, index in vocab.items():
        tokens[index] = text
        types[index] = gguf.TokenType.CONTROL if text in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the GPT-2 split regex: what ByteLevel(use_regex=True) applies
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id)):  # fmt: skip
        if config.get(key) is not None:
            add(int(config[key]))
    if "<unk>" in vocab:
        writer.add_unk_token_id(vocab["<unk>"])
    writer.add_add_bos_token(False)  # the tiny tokenizer adds no BOS either
    tok_config = model_dir / "tokenizer_config.json"
    template = json.loads(tok_config.read_text()).get("chat_template") if tok_config.is_file() else None
    chat = model_dir / "chat_template.jinja"
    if template is None and chat.is_file():
        template = chat.read_text()
    if template:
        writer.add_chat_template(template)
