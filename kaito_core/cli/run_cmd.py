"""`kaito run`, `kaito ps`, `kaito stop`, `kaito logs`: a Workspace as local processes on this machine.

Imports beyond click happen inside the commands, so `kaito run` starts fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from kaito_core.cli.output import OUTPUT_OPTION, emit_data, emit_table, fail

#: When the `kaito` process began (this module is imported at CLI start-up): the ready line's clock.
_STARTED = time.monotonic()


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--port", type=int, default=5000, show_default=True, help="Port to serve on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--name", default=None, help="Name of the run for ps/stop/logs [default: the Workspace name].")
@click.option("-d", "--detach", is_flag=True, help="Return once ready; the server keeps running.")
@click.option("--ready-timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait for the model to load and answer /health.")
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="Requests decoded together (each gets its own context) [default: kaito serve's, 8]; "
                   "fewer start faster and use less memory.")
@click.option("--no-progress", is_flag=True, help="No progress bars while weights are fetched.")
@click.option("--training-config", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="A tuning Workspace's training_config.yaml (what its tuning.config ConfigMap holds).")
def run_command(file: Path, port: int, host: str, name: str | None, detach: bool, ready_timeout: float,
                parallel: int | None, no_progress: bool, training_config: Path | None) -> None:
    """Serve the Workspace in FILE on this machine (/chat and the OpenAI API) until Ctrl-C.

    The same file a cluster takes: it is validated, planned for this machine's CPUs, memory and GPUs,
    its weights come from the registry named by the kaito.sh/model-artifact annotation or from the
    local store ($KAITO_HOME/store), and `kaito serve` runs it.
    """
    from kaito_core.local.errors import LocalRunError
    from kaito_core.local.runner import RunOptions, run

    if _is_tuning(file):
        _tune(file, name, training_config, not no_progress)
        return
    options = RunOptions(file=file, name=name, host=host, port=port, detach=detach,
                         ready_timeout=ready_timeout, progress=not no_progress, parallel=parallel or 0)
    try:
        code = run(options, started=_STARTED)
    except LocalRunError as exc:
        fail(str(exc))
    raise SystemExit(code)


def _is_tuning(file: Path) -> bool:
    from kaito_core.local.errors import LocalRunError
    from kaito_core.local.prepare import load_workspace

    try:
        return load_workspace(file).tuning is not None
    except LocalRunError:
        return False  # the inference path reports the file's problem in its own words


def _tune(file: Path, name: str | None, training_config: Path | None, progress: bool) -> None:
    """A tuning Workspace: the Job's steps here (kaito_core.local.tuning)."""
    from kaito_core.local import paths
    from kaito_core.local.errors import LocalRunError
    from kaito_core.local.prepare import load_workspace, validate
    from kaito_core.local.tuning import TuningRun, run_tuning
    from kaito_core.plugins import default_registry

    try:
        workspace = load_workspace(file)
        registry = default_registry()
        validate(workspace, registry, file)
        work_dir = paths.runs_dir() / paths.check_run_name(name or workspace.name)
        where = run_tuning(TuningRun(workspace, work_dir, training_config, progress), registry)
    except LocalRunError as exc:
        fail(str(exc))
    click.echo(f"kaito: adapter of {workspace.name} at {where}")


def _uptime(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


@click.command("ps")
@OUTPUT_OPTION
def ps_command(output: str) -> None:
    """List the runs on this machine: name, model, runtime, endpoint, state, uptime."""
    from kaito_core.local import state

    records = state.list_records()
    now = time.time()
    rows = []
    for record in records:
        current = record.state()
        rows.append({
            "name": record.name,
            "model": record.model,
            "runtime": record.runtime,
            "endpoint": record.endpoint,
            "state": current,
            "uptime": _uptime(record.uptime(now)) if current == "running" else "-",
            "pid": record.pid or None,
            "detached": record.detached,
            "log": record.log_file,
        })
    if output != "table":
        emit_data(rows, output)
        return
    emit_table(
        ["NAME", "MODEL", "RUNTIME", "ENDPOINT", "STATE", "UPTIME", "PID"],
        [(r["name"], r["model"], r["runtime"], r["endpoint"], r["state"], r["uptime"], r["pid"] or "-")
         for r in rows],
    )


@click.command("stop")
@click.argument("names", nargs=-1, required=True)
@click.option("--timeout", type=float, default=40.0, show_default=True,
              help="Seconds to wait for a graceful stop before killing.")
def stop_command(names: tuple[str, ...], timeout: float) -> None:
    """Stop the named runs (SIGTERM, then SIGKILL after --timeout) and forget them."""
    from kaito_core.local import procs, state
    from kaito_core.local.errors import LocalRunError

    failed = False
    for name in names:
        try:
            record = state.load(name)
        except LocalRunError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        if record is None:
            click.echo(f"error: no run named {name!r} (`kaito ps` lists the runs)", err=True)
            failed = True
            continue
        if record.state() == "exited":
            state.remove(name)
            click.echo(f"{name} had already exited; removed its record")
            continue
        # A foreground run: stop its `kaito run`, which forwards the signal and cleans up after itself.
        if not record.detached and record.supervisor_alive():
            procs.terminate(record.supervisor_pid, record.supervisor_start, timeout + 5)
        gone = procs.terminate(record.pid, record.pid_start, timeout) if record.pid else True
        if not gone:
            click.echo(f"error: {name} (pid {record.pid}) did not stop", err=True)
            failed = True
            continue
        state.remove(name)
        click.echo(f"stopped {name}")
    if failed:
        raise SystemExit(1)


@click.command("logs")
@click.argument("name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run exits.")
@click.option("-n", "--tail", type=int, default=None, help="Only the last N lines.")
def logs_command(name: str, follow: bool, tail: int | None) -> None:
    """Show the log of a detached run."""
    import sys

    from kaito_core.local import state
    from kaito_core.local.errors import LocalRunError

    try:
        record = state.load(name)
    except LocalRunError as exc:
        fail(str(exc))
    if record is None:
        fail(f"no run named {name!r} (`kaito ps` lists the runs)")
    if record.log_file is None:
        fail(f"{name} runs in the foreground: its output goes to the terminal it was started in "
             "(start it with --detach to log to a file)")
    path = Path(record.log_file)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        fail(f"the log of {name} is gone ({path})")
    out = sys.stdout.buffer
    with handle:
        data = handle.read()
        if tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail > 0 else b""
        out.write(data)
        out.flush()
        if not follow:
            return
        try:
            while True:
                chunk = handle.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                if not record.server_alive():
                    out.write(handle.read())
                    out.flush()
                    return
                time.sleep(0.2)
        except KeyboardInterrupt:
            return


def register(group: click.Group) -> None:
    """Add this module's commands to `group`."""
    for command in (run_command, ps_command, stop_command, logs_command):
        group.add_command(command)
