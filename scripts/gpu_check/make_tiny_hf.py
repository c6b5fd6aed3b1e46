#!/usr/bin/env python3
"""Write a tiny Hugging Face llama model directory (random bf16 safetensors + a fast BPE tokenizer with
a chat template) for the vLLM part of the GPU check, where no model can be downloaded.

Needs torch, transformers and tokenizers (the GPU image has them). The weights are random: the check
proves vLLM loads, batches and serves through `kaito serve`, not answer quality.

    python scripts/gpu_check/make_tiny_hf.py OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CORPUS = [
    "The capital of France is Paris. The capital of Germany is Berlin.",
    "Hello! How can I help you today? Say hello to the world.",
    "One two three four five six seven eight nine ten.",
    "A language model answers questions about cities, rivers and countries.",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:
        sys.exit(f"make_tiny_hf.py needs torch, tokenizers and transformers: {exc}")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}  # tokens, not secrets
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)
    fast.chat_template = CHAT_TEMPLATE
    args.out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(args.out)

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=128, intermediate_size=256, num_hidden_layers=args.layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=bos,
        eos_token_id=eos, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(args.out, safe_serialization=True)
    files = sorted(p.name for p in args.out.iterdir())
    print(f"wrote {args.out}: {len(fast)} tokens, {args.layers} layers, files {files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
