"""Plugins adding `kaito` subcommands (``kaito_register_commands``), registered without installing."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

import kaito_core.cli.main as cli_main
from kaito_core.plugins import Registry, hookimpl


class Commands:
    def __init__(self, *names: str, fail: bool = False) -> None:
        self.names = names
        self.fail = fail

    @hookimpl
    def kaito_register_commands(self, cli: click.Group) -> None:
        for name in self.names:

            @cli.command(name)
            @click.argument("who", default="world")
            def hello(who: str, _name: str = name) -> None:
                click.echo(f"{_name}: hello {who}")

        if self.fail:
            raise RuntimeError("the hook broke half-way")


def test_a_plugin_command_is_registered_with_its_distribution() -> None:
    registry = Registry()
    registry.register(Commands("hello"), distribution="kaito-hello", version="1.2")
    assert list(registry.commands()) == ["hello"]
    assert registry.owner("command", "hello") == "kaito-hello"
    assert ("hello", "command", "kaito-hello", "1.2") in [
        (p.name, p.kind, p.distribution, p.version) for p in registry.plugins()
    ]


def test_a_failing_hook_adds_no_command_and_is_reported_by_distribution() -> None:
    registry = Registry()
    registry.register(Commands("half", fail=True), distribution="kaito-broken")
    registry.register(Commands("fine"), distribution="kaito-fine")
    assert list(registry.commands()) == ["fine"]
    [error] = registry.errors()
    assert error.distribution == "kaito-broken" and "half-way" in (error.error or "")


def test_two_distributions_adding_one_command_name_clash() -> None:
    registry = Registry()
    registry.register(Commands("same"), distribution="kaito-a")
    registry.register(Commands("same"), distribution="kaito-b")
    assert registry.commands() == {}
    [error] = registry.errors()
    assert "kaito-a" in (error.error or "") and "kaito-b" in (error.error or "")


@pytest.fixture
def kaito_with(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real `kaito` group, seeing a registry of the given plugins instead of the installed ones."""

    def make(*plugins: object) -> click.Group:
        registry = Registry()
        for index, plugin in enumerate(plugins):
            registry.register(plugin, distribution=f"kaito-test-{index}")
        monkeypatch.setattr("kaito_core.plugins.default_registry", lambda: registry)
        group = cli_main.KaitoGroup(commands=dict(cli_main.cli.commands))
        return group

    return make


def test_kaito_runs_a_plugin_command_and_lists_it(kaito_with: Any) -> None:
    group = kaito_with(Commands("tiny-hello"))
    result = CliRunner().invoke(group, ["tiny-hello", "you"])
    assert result.exit_code == 0 and result.output == "tiny-hello: hello you\n"
    assert "tiny-hello" in CliRunner().invoke(group, ["--help"]).output


def test_a_plugin_cannot_replace_a_built_in_command(kaito_with: Any) -> None:
    group = kaito_with(Commands("plan"))
    result = CliRunner().invoke(group, ["--help"])
    assert result.exit_code == 0
    assert "kaito-test-0 adds a command 'plan', which kaito has already; ignored" in result.output
    assert group.commands["plan"] is cli_main.cli.commands["plan"]


def test_built_in_commands_do_not_load_plugins(kaito_with: Any) -> None:
    group = kaito_with(Commands("tiny-hello"))
    result = CliRunner().invoke(group, ["plugins", "--help"])
    assert result.exit_code == 0 and "tiny-hello" not in group.commands
