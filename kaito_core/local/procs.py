"""Process identity and liveness: a pid alone can be reused, so a run is its pid *and* start time."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

_HAS_PROC = Path("/proc/self/stat").exists()


def process_start_time(pid: int) -> int | None:
    """An opaque, stable start stamp of process ``pid`` (None when it does not exist).

    On Linux this is field 22 of ``/proc/<pid>/stat`` (clock ticks since boot), which never changes for
    a process and differs for a later process that reuses the pid. Elsewhere psutil is used if present.
    """
    if not _HAS_PROC:
        return _psutil_start_time(pid)
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _psutil_start_time(pid)
    # The command name (field 2) is in parentheses and may itself contain spaces or parentheses.
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; it only waits to be reaped
        return None
    return int(fields[19])


def _psutil_start_time(pid: int) -> int | None:
    try:
        import psutil
    except ImportError:
        return 0 if _pid_exists(pid) else None
    try:
        return int(psutil.Process(pid).create_time() * 1000)
    except psutil.Error:
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_alive(pid: int, start_time: int | None) -> bool:
    """True when ``pid`` runs and is the same process that was recorded (same start stamp)."""
    if pid <= 0:
        return False
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


def terminate(pid: int, start_time: int | None, timeout: float = 10.0) -> bool:
    """SIGTERM the recorded process, SIGKILL it after ``timeout``; True when it is gone.

    Never signals a process that merely reuses the pid (start time differs).
    """
    if not is_alive(pid, start_time):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, start_time, timeout):
        return True
    if is_alive(pid, start_time):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return _wait_gone(pid, start_time, 5.0)


def _wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid, start_time):
            return True
        time.sleep(0.05)
    return not is_alive(pid, start_time)
