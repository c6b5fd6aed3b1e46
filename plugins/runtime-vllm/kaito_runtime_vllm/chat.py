"""The chat template of a Hugging Face model directory, rendered by the shared sandboxed renderer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaito_core.plugins import FALLBACK_TEMPLATE, ChatTemplate


def _token_text(value: Any) -> str:
    # tokenizer_config.json writes special tokens as a string or as {"content": "...", ...}.
    if isinstance(value, dict):
        return str(value.get("content") or "")
    return str(value or "")


def load_template(model_path: str, override: str | None = None) -> ChatTemplate:
    """The preset's template when given, else the weights' (``chat_template.jinja`` as vLLM and
    transformers prefer it, then ``tokenizer_config.json``), else the plain fallback for base models."""
    directory = Path(model_path)
    config: dict[str, Any] = {}
    config_file = directory / "tokenizer_config.json"
    if directory.is_dir() and config_file.is_file():
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{config_file} is not readable JSON: {exc}") from exc
    source = override
    jinja_file = directory / "chat_template.jinja"
    if source is None and directory.is_dir() and jinja_file.is_file():
        source = jinja_file.read_text(encoding="utf-8")
    if source is None:
        found = config.get("chat_template")
        if isinstance(found, list):  # named templates: [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in found if isinstance(t, dict)}
            found = named.get("default") or next(iter(named.values()), None)
        source = found if isinstance(found, str) else None
    return ChatTemplate(
        source or FALLBACK_TEMPLATE,
        bos_token=_token_text(config.get("bos_token")),
        eos_token=_token_text(config.get("eos_token")),
    )
