"""The record of each run under ``$KAITO_HOME/runs/<name>/``: what ``kaito ps/stop/logs`` read.

``run.json`` holds the identity of the processes (pid + start stamp, see ``procs``), the endpoint and
the model. A record whose processes are gone (crash, reboot, kill -9) is *stale*: ``ps`` shows it as
exited, ``stop`` removes it, and a new run with the same name replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from kaito_core.local import paths, procs
from kaito_core.local.errors import LocalRunError

RECORD = "run.json"
LOG = "serve.log"


@dataclass
class RunRecord:
    name: str
    workspace: str
    workspace_file: str
    preset: str
    model: str  # the served model name (what /v1/models lists)
    runtime: str
    host: str
    port: int
    detached: bool
    started_at: float  # epoch seconds when `kaito run` began
    supervisor_pid: int  # the `kaito run` process (it exits after a detached run is ready)
    supervisor_start: int | None
    pid: int = 0  # the `kaito serve` process; 0 until it is started
    pid_start: int | None = None
    ready_at: float | None = None  # epoch seconds when /health first answered 200
    log_file: str | None = None  # detached runs only: the child's stdout and stderr

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def server_alive(self) -> bool:
        return self.pid > 0 and procs.is_alive(self.pid, self.pid_start)

    def supervisor_alive(self) -> bool:
        return procs.is_alive(self.supervisor_pid, self.supervisor_start)

    def state(self) -> str:
        """``running``, ``starting`` or ``exited`` (stale: nothing of the run is alive any more)."""
        if self.server_alive():
            return "running" if self.ready_at is not None else "starting"
        if not self.detached and self.supervisor_alive():
            return "starting"
        if self.detached and self.pid == 0 and self.supervisor_alive():
            return "starting"
        return "exited"

    def uptime(self, now: float | None = None) -> float:
        return (now or time.time()) - (self.ready_at or self.started_at)


def record_path(name: str) -> Path:
    return paths.run_dir(name) / RECORD


def log_path(name: str) -> Path:
    return paths.run_dir(name) / LOG


def save(record: RunRecord) -> None:
    """Write the record atomically (readers never see half a file)."""
    target = record_path(record.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{RECORD}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2))
    os.replace(tmp, target)


def load(name: str) -> RunRecord | None:
    path = record_path(name)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LocalRunError(f"the run record {path} is unreadable ({exc}); remove {path.parent}") from exc
    known = {f.name for f in fields(RunRecord)}
    try:
        return RunRecord(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise LocalRunError(f"the run record {path} is incomplete ({exc}); remove {path.parent}") from exc


def list_records() -> list[RunRecord]:
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    records = []
    for child in sorted(root.iterdir()):
        if (child / RECORD).is_file():
            with contextlib.suppress(LocalRunError):
                record = load(child.name)
                if record is not None:
                    records.append(record)
    return records


def claim(record: RunRecord) -> None:
    """Take the name for a new run; a stale record of the same name is replaced, a live one refused."""
    existing = load(record.name)
    if existing is not None and existing.state() != "exited":
        raise LocalRunError(
            f"a run named {record.name!r} is already {existing.state()} (pid {existing.pid or '-'}, "
            f"{existing.endpoint}); stop it with `kaito stop {record.name}` or choose another --name"
        )
    directory = paths.run_dir(record.name)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    save(record)


def remove(name: str) -> None:
    directory = paths.run_dir(name)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)


def remove_if_owned(record: RunRecord) -> None:
    """Remove the run's folder unless another run has claimed the name since (different supervisor)."""
    current = load(record.name) if record_path(record.name).exists() else None
    if current is None or (current.supervisor_pid, current.supervisor_start) == (
        record.supervisor_pid,
        record.supervisor_start,
    ):
        remove(record.name)
