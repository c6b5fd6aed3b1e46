"""The sandboxed chat template renderer (engine-neutral)."""

from __future__ import annotations

import pytest

from kaito_core.plugins import FALLBACK_TEMPLATE, ChatMessage, ChatTemplate, ChatTemplateError

GEMMA = (
    "{{ bos_token }}{% for m in messages %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_renders_turns_and_generation_prompt() -> None:
    template = ChatTemplate(GEMMA, bos_token="<bos>")
    text = template.render(
        [ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello"), ChatMessage("user", "Bye")]
    )
    assert text == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )
    assert not template.render([ChatMessage("user", "x")], add_generation_prompt=False).endswith("model\n")


@pytest.mark.parametrize(
    "attack",
    [
        # CVE-2024-34359: from a string to os via the class hierarchy
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ raise_exception.__globals__['__builtins__']['__import__']('os').system('id') }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        # mutation of the data handed in (ImmutableSandboxedEnvironment)
        "{{ messages.append({'role': 'system', 'content': 'x'}) }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    ],
)
def test_malicious_template_cannot_reach_python_internals(attack: str) -> None:
    template = ChatTemplate(attack)
    with pytest.raises(ChatTemplateError) as err:
        template.render([ChatMessage("user", "hi")])
    assert "chat template failed" in str(err.value)


def test_raise_exception_reaches_the_caller_with_its_message() -> None:
    template = ChatTemplate(
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="no system role"):
        template.render([ChatMessage("system", "be nice")])


def test_broken_template_and_no_messages_are_clear_errors() -> None:
    with pytest.raises(ChatTemplateError, match="does not compile"):
        ChatTemplate("{% for %}")
    with pytest.raises(ChatTemplateError, match="at least one message"):
        ChatTemplate(FALLBACK_TEMPLATE).render([])


def test_fallback_template_for_base_models() -> None:
    text = ChatTemplate(FALLBACK_TEMPLATE).render([ChatMessage("user", "What is 2+2?")])
    assert text == "user: What is 2+2?\nassistant:"
