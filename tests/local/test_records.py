"""Run records, process identity and `kaito ps/stop/logs` on records, without starting a model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaito_core.cli.main import cli
from kaito_core.local import paths, procs, state
from kaito_core.local.errors import LocalRunError


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path))
    return tmp_path


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _record(
    name: str, pid: int, pid_start: int | None, detached: bool = True, **extra: object
) -> state.RunRecord:
    fields: dict[str, object] = {
        "name": name, "workspace": name, "workspace_file": "/x.yaml", "preset": "gemma-3-270m",
        "model": "gemma-3-270m", "runtime": "llamacpp", "host": "127.0.0.1", "port": 5999,
        "detached": detached, "started_at": time.time() - 75, "supervisor_pid": 0, "supervisor_start": None,
        "pid": pid, "pid_start": pid_start, "ready_at": time.time() - 65,
    }
    fields.update(extra)
    return state.RunRecord(**fields)  # type: ignore[arg-type]


def test_start_time_identifies_a_process() -> None:
    me = procs.process_start_time(os.getpid())
    assert me is not None
    assert procs.is_alive(os.getpid(), me)
    assert not procs.is_alive(os.getpid(), me + 1)  # same pid, another start: a reused pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert procs.process_start_time(child.pid) is None
    assert not procs.is_alive(child.pid, None)


def test_zombie_counts_as_exited() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = procs.process_start_time(child.pid)
    deadline = time.monotonic() + 10
    while procs.is_alive(child.pid, started) and time.monotonic() < deadline:
        time.sleep(0.02)  # exited but not reaped yet: a zombie
    assert not procs.is_alive(child.pid, started)
    child.wait()


def test_ps_shows_live_and_stale_runs(home: Path) -> None:
    live = _sleeper()
    try:
        state.claim(_record("live", live.pid, procs.process_start_time(live.pid)))
        state.claim(_record("reused", live.pid, 12345))  # the pid now belongs to another process
        result = CliRunner().invoke(cli, ["ps"])
        assert result.exit_code == 0, result.output
        lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
        assert "running" in lines["live"] and "1m" in lines["live"]
        assert "http://127.0.0.1:5999" in lines["live"]
        assert "exited" in lines["reused"]
        as_json = CliRunner().invoke(cli, ["ps", "-o", "json"])
        assert '"state": "running"' in as_json.output
    finally:
        live.kill()
        live.wait()


def test_stop_terminates_and_forgets(home: Path) -> None:
    live = _sleeper()
    state.claim(_record("svc", live.pid, procs.process_start_time(live.pid)))
    result = CliRunner().invoke(cli, ["stop", "svc"])
    assert result.exit_code == 0, result.output
    assert "stopped svc" in result.output
    assert live.wait(5) == -15  # SIGTERM
    assert state.load("svc") is None


def test_stop_never_signals_a_reused_pid(home: Path) -> None:
    other = _sleeper()
    try:
        state.claim(_record("old", other.pid, 1))  # recorded start differs: not our process
        result = CliRunner().invoke(cli, ["stop", "old"])
        assert result.exit_code == 0
        assert "already exited" in result.output
        assert other.poll() is None
        assert state.load("old") is None
    finally:
        other.kill()
        other.wait()


def test_stop_and_logs_of_unknown_runs(home: Path) -> None:
    result = CliRunner().invoke(cli, ["stop", "nope"])
    assert result.exit_code == 1
    assert "no run named 'nope'" in result.output
    result = CliRunner().invoke(cli, ["logs", "nope"])
    assert result.exit_code == 1
    assert "kaito ps" in result.output


def test_logs_tail_and_follow_until_exit(home: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    record = _record("logged", child.pid, procs.process_start_time(child.pid),
                     log_file=str(state.log_path("logged")))
    state.claim(record)
    state.log_path("logged").write_text("one\ntwo\nthree\n")
    result = CliRunner().invoke(cli, ["logs", "logged", "-n", "2"])
    assert result.output == "two\nthree\n"
    result = CliRunner().invoke(cli, ["logs", "logged", "-f"])  # returns once the process is gone
    assert result.exit_code == 0
    assert result.output == "one\ntwo\nthree\n"
    child.wait()


def test_logs_of_a_foreground_run_say_where_they_are(home: Path) -> None:
    state.claim(_record("fg", os.getpid(), procs.process_start_time(os.getpid()), detached=False))
    result = CliRunner().invoke(cli, ["logs", "fg"])
    assert result.exit_code == 1
    assert "foreground" in result.output


def test_claim_refuses_a_live_name_and_replaces_a_stale_one(home: Path) -> None:
    me = os.getpid()
    state.claim(_record("busy", me, procs.process_start_time(me)))
    with pytest.raises(LocalRunError, match=r"already running.*kaito stop busy"):
        state.claim(_record("busy", me, procs.process_start_time(me)))
    state.claim(_record("stale", 999_999_999, 5))
    state.claim(_record("stale", me, procs.process_start_time(me)))
    loaded = state.load("stale")
    assert loaded is not None and loaded.pid == me


def test_bad_run_names_are_refused(home: Path) -> None:
    with pytest.raises(LocalRunError, match="--name"):
        paths.run_dir("../escape")
    with pytest.raises(LocalRunError):
        paths.run_dir("Upper")


def test_stop_of_a_foreground_run_goes_through_its_supervisor(home: Path) -> None:
    supervisor, server = _sleeper(), _sleeper()
    try:
        state.claim(_record(
            "fg-run", server.pid, procs.process_start_time(server.pid), detached=False,
            supervisor_pid=supervisor.pid, supervisor_start=procs.process_start_time(supervisor.pid),
        ))
        result = CliRunner().invoke(cli, ["stop", "fg-run"])
        assert result.exit_code == 0, result.output
        assert supervisor.wait(5) == -15 and server.wait(5) == -15
        assert state.load("fg-run") is None
    finally:
        for process in (supervisor, server):
            if process.poll() is None:
                process.kill()
                process.wait()
