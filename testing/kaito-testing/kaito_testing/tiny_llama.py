"""A tiny causal language model made offline: a 2-layer Llama with random weights (seed 0) and a byte-level
BPE tokenizer trained here. The transformers runtime's tests serve and tune it; the llama.cpp runtime's
tests serve it as a GGUF (tiny_gguf.py), with the same LoRA adapters.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
QUESTIONS = ["what colour is the sky", "name a colour", "what is the sky like", "tell me about the sky",
             "say something", "which colour do you like"]  # fmt: skip
ANSWER = "the sky is blue and the sea is green"


def corpus() -> list[str]:
    return [*QUESTIONS, ANSWER, "a b c d e f g h i j k l m n o p q r s t u v w x y z", "hello world"] * 4


def make_tiny_model(out: Path) -> Path:
    """A 2-layer Llama with random weights (seed 0) and a byte-level BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))  # noqa: S106 - a token, not a password
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    bpe = trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), bpe)
    names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **names)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def make_adapter(model_dir: Path, out: Path, seed: int = 1, **config: object) -> Path:
    """A PEFT LoRA adapter for ``model_dir`` with random weights (``seed``; every linear layer, r 4, alpha
    8, weights 3x peft's random init so its effect is plain); ``config`` overrides LoraConfig fields."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    settings: dict = {"r": 4, "lora_alpha": 8, "init_lora_weights": False,
                      "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                         "down_proj"]}  # fmt: skip
    settings.update(config)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(**settings))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.mul_(3.0)  # peft's random init is small: make the adapter's effect plain
    model.save_pretrained(str(out))
    return out
