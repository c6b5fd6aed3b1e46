"""The plugin examples in docs/plugins.md run, register, and behave as the text says."""

from __future__ import annotations

import re
import types
from pathlib import Path

from click.testing import CliRunner

from kaito_core.plugins import NodeRequest, Registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def doc_plugins() -> list[types.ModuleType]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    modules = []
    for index, source in enumerate(block for block in blocks if "@hookimpl" in block):
        module = types.ModuleType(f"docs_plugin_{index}")
        exec(compile(source, f"{DOC}:block{index}", "exec"), module.__dict__)
        modules.append(module)
    return modules


def test_the_documented_plugins_register_cleanly() -> None:
    modules = doc_plugins()
    assert len(modules) == 4
    registry = Registry()
    for index, module in enumerate(modules):
        registry.register(module, distribution=f"docs-example-{index}")
    assert registry.errors() == []
    assert registry.preset("tiny-llm").requirements.gpu_count == 0
    runtime = registry.runtime("llama-server")
    assert runtime.formats == ("gguf",) and runtime.overhead_bytes(4096) > 0
    provisioner = registry.provisioner("byo-t4")
    assert provisioner.catalog()["t4"].total_gpu_memory == 16 * 1024**3
    result = provisioner.ensure_nodes(
        NodeRequest(workspace="ws", namespace="default", instance_type="t4", count=1, labels={"apps": "x"})
    )
    assert result.pending == 1 and result.error is not None and "apps" in result.error
    hello = registry.commands()["tiny-hello"]
    assert CliRunner().invoke(hello, ["you"]).output == "hello you\n"
