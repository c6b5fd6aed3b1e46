"""Failures end in one clear line and leave nothing half-written: corruption, outages, 5xx, kills."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kaito_core.artifacts import ArtifactError, inspect_artifact, pull, push


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_corrupted_blob_is_detected_and_never_visible(
    registry_factory, model_dir: Path, tmp_path: Path
) -> None:
    server = registry_factory()
    ref = f"{server.host}/corrupt/model:v1"
    push(model_dir, ref, progress=False)
    layer = next(f for f in inspect_artifact(ref)["files"] if f["name"] == "model.safetensors")
    data_path = server.blob_data_path(layer["digest"])
    damaged = bytearray(data_path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte, same size
    data_path.write_bytes(bytes(damaged))

    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError) as info:
        pull(ref, tmp_path / "out", cache_dir=cache, progress=False)
    message = str(info.value)
    assert "corrupt" in message and "model.safetensors" in message and server.host in message
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if "kaito-" in p.name]  # no temp files left
    assert not list((cache / "tmp").glob("*.partial"))  # the bad bytes are not kept for a resume
    assert not (cache / "sha256" / layer["digest"].removeprefix("sha256:")).exists()


def test_registry_down_is_one_clear_line(tmp_path: Path) -> None:
    host = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(ArtifactError) as info:
        pull(f"{host}/models/x:1", tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    assert time.monotonic() - started < 5  # bounded retries, not oras-py's 131 s of sleeps
    message = str(info.value)
    assert "cannot reach registry" in message and host in message and "connection refused" in message
    assert "models/x:1" in message and "\n" not in message

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaito_core.cli.main",
            "model",
            "pull",
            f"{host}/models/x:1",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: cannot reach registry") and proc.stderr.count("\n") == 1


@pytest.fixture
def failing_registry() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server answering 503 to everything (a registry in trouble); records requests."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_5xx_is_retried_three_times_then_reported(failing_registry, tmp_path: Path) -> None:
    host, seen = failing_registry
    started = time.monotonic()
    with pytest.raises(ArtifactError) as info:
        pull(f"{host}/models/x:1", tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    assert len(seen) == 3 and time.monotonic() - started < 3
    assert "503" in str(info.value) and "after 3 tries" in str(info.value) and host in str(info.value)


class ThrottlingProxy:
    """A TCP proxy to the registry that slows responses down to ``rate`` bytes/s, or cuts one off."""

    def __init__(
        self,
        upstream: str,
        rate: int | None,
        cut_after: int | None = None,
        cut_request_after: int | None = None,
    ) -> None:
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.rate = rate
        self.cut_after = cut_after  # drop the connection once, after this many response bytes
        self.requests = bytearray()  # everything clients sent (request lines and headers)
        self.cut_request_after = cut_request_after  # the same, for bytes clients send (uploads)
        self._sent = 0
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.upstream_host, self.upstream_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, to_client: bool) -> None:
        try:
            while data := source.recv(16384):
                if not to_client:
                    if (
                        self.cut_request_after is not None
                        and len(self.requests) + len(data) > self.cut_request_after
                    ):
                        self.cut_request_after = None  # only once
                        break
                    self.requests.extend(data)
                elif self.cut_after is not None:
                    with self._lock:
                        allowed = self.cut_after - self._sent
                        self._sent += len(data)
                    if 0 <= allowed < len(data):
                        self.cut_after = None  # only once
                        sink.sendall(data[:allowed])
                        break
                sink.sendall(data)
                if to_client and self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self.listener.close()


def test_killed_pull_resumes_with_fewer_bytes(registry, tmp_path: Path) -> None:
    size = 6 * 1024 * 1024
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.gguf").write_bytes(os.urandom(size))
    ref_path = f"resume/{os.getpid()}-{time.monotonic_ns()}:v1"
    push(model, f"{registry.host}/{ref_path}", progress=False)

    proxy = ThrottlingProxy(registry.host, rate=1_500_000)
    cache = tmp_path / "cache"
    dest = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kaito_core.cli.main",
            "model",
            "pull",
            f"{proxy.host}/{ref_path}",
            str(dest),
            "--cache-dir",
            str(cache),
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        partial: list[Path] = []
        while time.monotonic() < deadline:
            partial = list((cache / "tmp").glob("*.partial")) if (cache / "tmp").exists() else []
            if partial and partial[0].stat().st_size >= size // 4:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    kept = partial[0].stat().st_size
    assert size // 4 <= kept < size
    assert not (dest / "weights.gguf").exists()  # nothing under the real name after the kill

    result = pull(f"{registry.host}/{ref_path}", dest, cache_dir=cache, progress=False)
    assert result.bytes_downloaded == size - kept  # resumed with a Range request
    assert (dest / "weights.gguf").read_bytes() == (model / "weights.gguf").read_bytes()
    assert not list((cache / "tmp").glob("*.partial"))


def test_broken_connection_is_resumed_within_the_pull(registry, tmp_path: Path) -> None:
    size = 3 * 1024 * 1024
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.gguf").write_bytes(os.urandom(size))
    ref_path = f"resume/cut-{os.getpid()}-{time.monotonic_ns()}:v1"
    push(model, f"{registry.host}/{ref_path}", progress=False)
    proxy = ThrottlingProxy(registry.host, rate=None, cut_after=1024 * 1024)
    try:
        result = pull(f"{proxy.host}/{ref_path}", tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    finally:
        proxy.close()
    assert (tmp_path / "out" / "weights.gguf").read_bytes() == (model / "weights.gguf").read_bytes()
    assert b"range: bytes=" in bytes(proxy.requests).lower()  # the rest came with a Range request
    assert result.bytes_downloaded == size  # nothing fetched twice


def test_silent_registry_times_out_with_a_clear_line(tmp_path: Path) -> None:
    """A registry that accepts connections and never answers: bounded by --timeout, 3 tries."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    host = f"127.0.0.1:{listener.getsockname()[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(ArtifactError) as info:
            pull(
                f"{host}/models/x:1", tmp_path / "out", cache_dir=tmp_path / "c", progress=False, timeout=0.3
            )
    finally:
        stop.set()
        listener.close()
        for sock in accepted:
            sock.close()
    assert time.monotonic() - started < 5
    assert "timed out" in str(info.value) and host in str(info.value) and "3 tries" in str(info.value)


def test_upload_cut_mid_chunk_is_retried(registry, tmp_path: Path) -> None:
    """A PATCH whose connection drops halfway: kaito asks the registry where the upload stands and
    continues (or restarts the session); the pushed blob is intact."""
    model = tmp_path / "model"
    model.mkdir()
    payload = os.urandom(6 * 1024 * 1024)
    (model / "weights.gguf").write_bytes(payload)
    ref_path = f"upload/cut-{os.getpid()}-{time.monotonic_ns()}:v1"
    proxy = ThrottlingProxy(registry.host, rate=None, cut_request_after=3 * 1024 * 1024)
    try:
        digest = push(model, f"{proxy.host}/{ref_path}", progress=False, chunk_size=2 * 1024 * 1024)
    finally:
        proxy.close()
    assert proxy.cut_request_after is None  # the cut happened
    result = pull(f"{registry.host}/{ref_path}", tmp_path / "out", cache_dir=tmp_path / "c", progress=False)
    assert result.digest == digest
    assert (tmp_path / "out" / "weights.gguf").read_bytes() == payload
