"""The README's preset table is the one the installed presets generate (`kaito presets --markdown`;
`python scripts/update_readme_presets.py` rewrites it)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kaito_core.cli.plugins_cmd import README_BEGIN, README_END, presets_command, presets_markdown
from kaito_core.plugins import default_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_preset_table_is_current() -> None:
    text = README.read_text()
    table = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    assert table == "\n" + presets_markdown(default_registry()), (
        "README.md's preset table is stale: run `python scripts/update_readme_presets.py`"
    )


def test_the_table_lists_kaitos_catalog_and_not_deprecated_presets() -> None:
    table = presets_markdown(default_registry())
    for name in ("phi-4", "phi-4-mini-instruct", "llama-3.1-8b-instruct", "llama-3.3-70b-instruct",
                 "mistral-7b", "mistral-7b-instruct", "ministral-3-8b-instruct", "qwen2.5-coder-7b-instruct",
                 "deepseek-r1-distill-qwen-14b", "deepseek-r1-0528", "gpt-oss-20b", "gpt-oss-120b",
                 "gemma-3-4b-instruct", "phi-3-mini-4k-instruct"):
        assert f"| `{name}` |" in table
    assert "`phi-2`" not in table


def test_kaito_presets_markdown_prints_it() -> None:
    result = CliRunner().invoke(presets_command, ["--markdown"])
    assert result.exit_code == 0
    assert result.output == presets_markdown(default_registry())
