"""Chat templates rendered in a sandbox.

Chat templates are Jinja source that arrives with the weights (GGUF metadata ``tokenizer.chat_template``,
``tokenizer_config.json``) or from a preset. Weights are untrusted input: a template rendered by a plain
``jinja2.Environment`` can walk ``__class__.__mro__`` to ``os.system`` (CVE-2024-34359 in
llama-cpp-python). Every template here goes through ``ImmutableSandboxedEnvironment``, which refuses
attribute access to internals and mutation of the data passed in. Engine-neutral: the llama.cpp and the
vLLM runtime both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from kaito_core.plugins.engine import ChatMessage

#: Used when neither the preset nor the weights carry a template (a base model): plain turns that a
#: completion model continues sensibly.
FALLBACK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


class ChatTemplateError(ValueError):
    """The template is broken, unsafe, or refused these messages (``raise_exception`` in the template)."""


def _raise_exception(message: str) -> NoReturn:
    # Hugging Face templates call this to reject e.g. a system message the model does not support.
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        # jinja2 is imported with the first template, not with the SDK face every plugin loads
        from jinja2 import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        # trim_blocks/lstrip_blocks: the settings Hugging Face's apply_chat_template uses, which the
        # published templates are written for.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"chat template does not compile: {exc}") from exc
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        add_generation_prompt: bool = True,
        **extra: Any,
    ) -> str:
        if not messages:
            raise ChatTemplateError("messages must hold at least one message")
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            )
        except ChatTemplateError:
            raise
        except Exception as exc:  # a template is code from the weights (SecurityError included): its fault
            raise ChatTemplateError(f"chat template failed: {type(exc).__name__}: {exc}") from exc
