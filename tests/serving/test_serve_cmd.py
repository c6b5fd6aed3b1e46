"""`kaito serve` option handling that needs no model: API keys and adapters."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kaito_core.cli.main import cli
from kaito_core.cli.serve_cmd import _parse_adapters, _read_keys


def test_keys_from_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nalpha\n\n  beta  \n")
    monkeypatch.setenv("KAITO_SERVE_API_KEY", "gamma")
    assert _read_keys(str(keys)) == ("alpha", "beta", "gamma")
    monkeypatch.delenv("KAITO_SERVE_API_KEY")
    assert _read_keys(None) == ()  # off by default


def test_unreadable_or_empty_key_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(click.BadParameter, match="cannot read the API key file"):
        _read_keys(str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(click.BadParameter, match="holds no key"):
        _read_keys(str(tmp_path / "empty"))


def test_adapters_are_name_equals_path() -> None:
    assert _parse_adapters(("pirate=/mnt/adapter/pirate",)) == {"pirate": "/mnt/adapter/pirate"}
    with pytest.raises(click.BadParameter, match="expected NAME=PATH"):
        _parse_adapters(("/mnt/adapter/pirate",))


def test_help_lists_every_flag() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--runtime", "--model", "--port", "--host", "--served-model-name", "--context-length",
                 "--threads", "--n-gpu-layers", "--max-batch", "--chat-template-file", "--adapter",
                 "--api-key-file", "--max-tokens-cap", "--max-n", "--queue-size", "--grace-period",
                 "--max-body-bytes", "--header-timeout", "--stall-timeout", "--log-level"):  # fmt: skip
        assert flag in result.output
