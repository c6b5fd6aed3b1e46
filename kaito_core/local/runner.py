"""``kaito run``: prepare, check the port, get the weights, start ``kaito serve``, wait, supervise.

Every step that can fail on user input runs before the model is started, in order of cost: the file,
validation, the fit on this machine, the port, the weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kaito_core.local import launch, paths, ports, procs, state
from kaito_core.local.errors import LocalRunError

if TYPE_CHECKING:
    from kaito_core.local.prepare import Prepared
    from kaito_core.planning.hardware import Hardware
    from kaito_core.plugins import Registry

DEFAULT_PORT = 5000  # KAITO's serving port, so the same curl line works locally and in a cluster
DEFAULT_HOST = "127.0.0.1"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


@dataclass(frozen=True)
class RunOptions:
    file: Path
    name: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    detach: bool = False
    ready_timeout: float = 600.0
    progress: bool = True  # progress bars while weights are fetched or packed
    parallel: int = 0  # requests decoded together (kaito serve --max-batch); 0: its default


def _say(message: str) -> None:
    click.echo(f"kaito: {message}")
    sys.stdout.flush()


def run(
    options: RunOptions,
    registry: Registry | None = None,
    hardware: Hardware | None = None,
    started: float | None = None,
) -> int:
    """Run the Workspace until stopped (foreground) or until ready (detached). Returns the exit code."""
    t0 = started if started is not None else time.monotonic()
    # The server process starts now and imports while this one plans (see local/prestart.py).
    early_log = paths.runs_dir() / f".starting-{os.getpid()}.log" if options.detach else None
    server = _prestart(early_log, options.detach)
    try:
        if registry is None:
            from kaito_core.plugins import default_registry

            registry = default_registry()
        record, prepared = _prepare(options, registry, hardware, t0)
        if early_log is not None:
            os.replace(early_log, state.log_path(record.name))
    except BaseException:
        launch.abandon(server)
        if early_log is not None:
            early_log.unlink(missing_ok=True)
        raise
    try:
        return _serve(prepared, record, options, t0, server)
    finally:
        if not options.detach or record.ready_at is None:
            state.remove_if_owned(record)


def _prestart(early_log: Path | None, detach: bool) -> subprocess.Popen[bytes] | None:
    if early_log is None:
        return launch.prestart(None, detach)
    early_log.parent.mkdir(parents=True, exist_ok=True)
    with open(early_log, "ab") as log:
        return launch.prestart(log, detach)


def _prepare(
    options: RunOptions, registry: Registry, hardware: Hardware | None, t0: float
) -> tuple[state.RunRecord, Prepared]:
    """Everything that can fail on user input, cheapest first; ends by claiming the run's name."""
    from kaito_core.local.prepare import prepare

    prepared = prepare(options.file, registry, hardware)
    name = paths.check_run_name(options.name or prepared.workspace.name)
    ports.check_port(options.host, options.port)
    record = state.RunRecord(
        name=name,
        workspace=prepared.workspace.name,
        workspace_file=str(options.file.resolve()),
        preset=prepared.plan.preset,
        model=prepared.plan.served_model_name or prepared.plan.preset,
        runtime=prepared.plan.runtime,
        host=options.host,
        port=options.port,
        detached=options.detach,
        started_at=time.time() - (time.monotonic() - t0),
        supervisor_pid=os.getpid(),
        supervisor_start=procs.process_start_time(os.getpid()),
        log_file=str(state.log_path(name)) if options.detach else None,
    )
    state.claim(record)
    return record, prepared


def _start_server(
    args: launch.ServeArgs, record: state.RunRecord, options: RunOptions,
    server: subprocess.Popen[bytes] | None,
) -> subprocess.Popen[bytes]:
    """Hand the arguments to the prestarted server, or start one the plain way."""
    if server is not None and launch.hand_over(server, args):
        return server
    launch.abandon(server)
    log = open(state.log_path(record.name), "ab") if options.detach else None  # noqa: SIM115
    try:
        return launch.start(args.argv(), log, options.detach)
    finally:
        if log is not None:
            log.close()


def _serve(
    prepared: Prepared, record: state.RunRecord, options: RunOptions, t0: float,
    server: subprocess.Popen[bytes] | None,
) -> int:
    from kaito_core.local.weights import model_path_for

    plan = prepared.plan
    run_dir = paths.run_dir(record.name)
    try:
        model = model_path_for(prepared, run_dir, progress=options.progress)
        template_file = None
        if plan.chat_template:
            template_file = run_dir / CHAT_TEMPLATE_FILE
            template_file.write_text(plan.chat_template)
        args = launch.ServeArgs(
            runtime=plan.runtime,
            model=model,
            host=options.host,
            port=options.port,
            served_model_name=record.model,
            context_length=plan.context_length,
            threads=plan.threads,
            n_gpu_layers=plan.n_gpu_layers,
            max_batch=options.parallel,
            chat_template_file=template_file,
            adapters=pull_adapters(prepared, run_dir, options.progress),
        )
        # The port may have been taken while the weights were fetched; still cheaper to ask than to load.
        ports.check_port(options.host, options.port)
    except BaseException:
        launch.abandon(server)
        raise
    process = _start_server(args, record, options, server)
    record.pid = process.pid
    record.pid_start = procs.process_start_time(process.pid)
    state.save(record)
    _say(
        f"starting {record.name}: {plan.preset} on {plan.runtime} "
        f"({plan.weights_format} {plan.quantization}, {plan.target or 'this machine'}) at {record.endpoint}"
    )
    if options.detach:
        _say(f"logs: {record.log_file}")

    with launch.SignalForwarder(process) as forwarder:
        try:
            launch.wait_ready(
                process, options.host, options.port, options.ready_timeout,
                on_exit=lambda code: _exit_hint(record, forwarder.received),
                interrupted=lambda: forwarder.received is not None,
            )
        except LocalRunError:
            launch.stop(process)
            if forwarder.received is not None:
                _say("stopped before it was ready")
                return 0
            raise
        if forwarder.received is not None:  # interrupted while starting
            code = forwarder.wait()
            _say(f"stopped before it was ready (exit code {code})")
            return 0
        record.ready_at = time.time()
        state.save(record)
        _ready(record, time.monotonic() - t0)
        if options.detach:
            _say(f"running in the background (pid {process.pid}); `kaito logs {record.name} -f`, "
                 f"`kaito stop {record.name}`")
            return 0
        code = forwarder.wait()
    if forwarder.received is not None:
        _say(f"stopped {record.name}")
        return 0
    click.echo(f"error: `kaito serve` exited with code {code}", err=True)
    return code if code > 0 else 1


def pull_adapters(prepared: Prepared, run_dir: Path, progress: bool) -> tuple[tuple[str, Path, float], ...]:
    """Each adapter pulled (verified, cached) into RUN/adapters/<name>, as the init containers do: kaito's
    artifact, an oras directory or a container image with the files under /data/ (KAITO's adapter
    images). A hostPath volume adapter is read where it is, as the pod mounts its volume."""
    from kaito_core.artifacts import ArtifactError, pull
    from kaito_core.artifacts.unpack import check_adapter

    pulled = []
    for adapter in prepared.plan.adapters:
        if adapter.volume is not None:  # prepare() refused volumes other than hostPath
            target = Path(str(adapter.volume["hostPath"].get("path", ""))).expanduser()
            source = f"the hostPath volume {target}"
        else:
            assert adapter.image is not None  # prepare() refused adapters without either
            target, source = run_dir / "adapters" / adapter.name, adapter.image
        try:
            if adapter.volume is None:
                pull(source, target, progress=progress)
            check_adapter(target, source)
        except ArtifactError as exc:
            raise LocalRunError(f"adapter {adapter.name}: could not pull {source}: {exc}") from exc
        pulled.append((adapter.name, target, adapter.strength))
    return tuple(pulled)


def _exit_hint(record: state.RunRecord, received: int | None) -> str:
    if received is not None:
        return ""
    if record.log_file is None:
        return " (its output is above)"
    tail = _tail(Path(record.log_file), 20)
    return f"; the end of its log ({record.log_file}):\n{tail}" if tail else f" (log: {record.log_file})"


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _ready(record: state.RunRecord, seconds: float) -> None:
    url = record.endpoint
    _say(f"ready in {seconds:.2f}s on port {record.port}: {url} (/chat, OpenAI API at {url}/v1)")
    click.echo(
        f"  curl -s {url}/chat -H 'Content-Type: application/json' "
        "-d '{\"prompt\": \"The capital of France is\", \"generate_kwargs\": {\"max_new_tokens\": 32}}'"
    )
    if not record.detached:
        click.echo("  (Ctrl-C stops it)")
    sys.stdout.flush()
