#!/usr/bin/env python3
"""Write a tiny, valid llama-architecture GGUF with random weights, for checks where no model is at hand.

The file loads in llama.cpp like any Llama model (SentencePiece-style vocabulary with byte fallback,
so any text tokenizes; a chat template in the metadata), but its weights are random: it exercises
loading, GPU offload, batching and the HTTP surface, not answer quality. Deterministic for a seed.

    python scripts/gpu_check/make_tiny_gguf.py OUT.gguf [--layers 4] [--embd 128] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

try:
    import gguf
except ImportError:  # pragma: no cover - exercised on a machine without it
    sys.exit("make_tiny_gguf.py needs the `gguf` package: pip install gguf (or carry its wheel)")

#: Words given whole-word pieces, so ordinary English tokenizes into few tokens.
WORDS = (
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "that", "with", "as", "by", "at",
    "from", "it", "an", "be", "this", "are", "or", "which", "his", "her", "capital", "city",
    "country", "france", "paris", "river", "language", "model", "answer", "question", "hello",
    "world", "yes", "no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "what", "where", "who", "when", "how", "why", "a", "i", "you", "we", "they",
)
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# llama.cpp's token types
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]  # byte fallback: every string tokenizes
    types += [BYTE] * 256
    pieces: list[str] = ["\u2581"]
    pieces += [chr(c) for c in range(0x21, 0x7F)]  # printable ASCII
    pieces += ["\u2581" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += ["\u2581" + w for w in WORDS if len(w) > 1]
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(NORMAL)
    # SentencePiece merges prefer higher scores; longer pieces score higher so whole words win.
    scores = [0.0] * 259 + [-1000.0 / (1 + len(t)) for t in tokens[259:]]
    return tokens, scores, types


def write(path: Path, *, layers: int, embd: int, heads: int, kv_heads: int, ff: int, context: int,
          seed: int) -> None:
    tokens, scores, types = vocabulary()
    n_vocab, head_dim = len(tokens), embd // heads
    rng = np.random.default_rng(seed)

    def weight(rows: int, cols: int) -> np.ndarray:
        # numpy shape (rows, cols) is ggml's {cols, rows}: token_embd is (n_vocab, n_embd).
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("kaito-tiny-random-llama")
    writer.add_context_length(context)
    writer.add_embedding_length(embd)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_rope_dimension_count(head_dim)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    ones = np.ones(embd, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weight(n_vocab, embd))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(heads * head_dim, embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(kv_heads * head_dim, embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(kv_heads * head_dim, embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(embd, heads * head_dim))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(ff, embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(embd, ff))
    writer.add_tensor("output_norm.weight", ones)
    output = weight(n_vocab, embd)
    output[:259] = 0.0  # never prefer control or raw byte tokens: random text stays valid UTF-8
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .gguf file to write")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--embd", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--ff", type=int, default=256)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.embd % args.heads or args.heads % args.kv_heads:
        parser.error("--embd must be a multiple of --heads, and --heads a multiple of --kv-heads")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, layers=args.layers, embd=args.embd, heads=args.heads, kv_heads=args.kv_heads,
          ff=args.ff, context=args.context, seed=args.seed)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {args.layers} layers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
