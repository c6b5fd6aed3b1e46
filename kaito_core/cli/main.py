"""Entry point of the `kaito` command: assembles the subcommands each module contributes."""

from __future__ import annotations

import importlib

import click

#: Each module defines ``register(group)``; keep their top-level imports light (click only) so that
#: `kaito --help` and `kaito run` start fast.
COMMAND_MODULES = (
    "kaito_core.cli.plugins_cmd",  # plugins, presets
    "kaito_core.cli.api_cmd",  # crd, validate
    "kaito_core.cli.plan_cmd",  # plan
    "kaito_core.cli.serve_cmd",  # serve
    "kaito_core.cli.model_cmd",  # model push|pull|inspect|pack
    "kaito_core.cli.operator_cmd",  # operator
    "kaito_core.cli.run_cmd",  # run, ps, stop, logs
    "kaito_core.cli.data_cmd",  # data fetch (tuning input)
)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``kaito --version``; the version is looked up only when asked for (it costs start-up time)."""
    if not value or ctx.resilient_parsing:
        return
    from kaito_core import __version__

    click.echo(f"kaito, version {__version__}")
    ctx.exit()


class KaitoGroup(click.Group):
    """The `kaito` group: built-in commands, then those plugins add (``kaito_register_commands``).

    Plugin commands are looked up only for a name that is not built in (and for ``--help``), so the
    built-in commands start without importing a plugin."""

    _plugins_added = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self.add_plugin_commands():
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)

    def add_plugin_commands(self) -> bool:
        """Add the installed plugins' commands once; False when that was done already."""
        if self._plugins_added:
            return False
        self._plugins_added = True
        from kaito_core.plugins import default_registry

        registry = default_registry()
        for name, command in registry.commands().items():
            if name in self.commands:
                owner = registry.owner("command", name)
                click.echo(f"kaito: warning: {owner} adds a command {name!r}, which kaito has already; "
                           "ignored", err=True)  # fmt: skip
                continue
            self.add_command(command, name)
        return True


@click.group(cls=KaitoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def cli() -> None:
    """Run large language models on Kubernetes, or on this machine, from one Workspace file."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(cli)


def main() -> None:
    cli(prog_name="kaito")


if __name__ == "__main__":
    main()
