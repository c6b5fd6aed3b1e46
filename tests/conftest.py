"""Shared fixtures: a real OCI registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1.

- ``registry`` (session): a plain registry; reuses ``$KAITO_TEST_REGISTRY`` (``.ci/run`` starts one on
  127.0.0.1:5055) or starts its own. ``.host`` is "127.0.0.1:PORT".
- ``registry_factory`` (function): starts special registries that the test may break: htpasswd basic
  auth, the bearer-token flow against a token server (``TokenServer``), and an own storage directory
  (``.root``) whose blobs a test can corrupt. Everything it starts is stopped at teardown.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

REGISTRY_BINARY = "docker-registry"


@dataclass
class RegistryServer:
    host: str  # "127.0.0.1:PORT"
    root: Path | None = None  # storage directory; None for the CI-provided registry
    username: str | None = None
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_data_path(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob (to corrupt it in tests)."""
        assert self.root is not None, "the CI registry's storage is not ours to touch"
        hex_digest = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.token_server is not None:
            self.token_server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: RegistryServer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            log = server.log.read_text() if server.log else ""
            raise RuntimeError(f"docker-registry exited with {server.process.returncode}: {log[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/v2/", timeout=1):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:  # up, and asking for auth
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry on {server.host} did not answer within {timeout} s")


def start_registry(
    workdir: Path,
    *,
    htpasswd: tuple[str, str] | None = None,
    token_server: TokenServer | None = None,
) -> RegistryServer:
    """Start docker-registry with a temporary config on a free 127.0.0.1 port."""
    if shutil.which(REGISTRY_BINARY) is None:
        message = "docker-registry is not installed (apt-get install docker-registry)"
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
            pytest.fail(message)
        pytest.skip(message)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
    }
    username = password = None
    if htpasswd is not None:
        import bcrypt

        username, password = htpasswd
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (workdir / "htpasswd").write_text(f"{username}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "kaito-test", "path": str(workdir / "htpasswd")}}
    if token_server is not None:
        username, password = token_server.username, token_server.password
        config["auth"] = {
            "token": {
                "realm": token_server.realm,
                "service": token_server.service,
                "issuer": token_server.issuer,
                "rootcertbundle": str(token_server.cert_path),
            }
        }
    config_path = workdir / "config.yml"
    config_path.write_text(json.dumps(config))  # JSON is YAML
    log = workdir / "registry.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config_path)], stdout=log_file, stderr=subprocess.STDOUT
        )
    server = RegistryServer(
        host=f"127.0.0.1:{port}",
        root=workdir / "data",
        username=username,
        password=password,
        process=process,
        log=log,
        token_server=token_server,
    )
    try:
        _wait_ready(server)
    except Exception:
        server.stop()
        raise
    return server


# ------------------------------------------------------------------------------------- token server


@dataclass
class TokenServer:
    """The Docker/distribution token service: GET /token?service=&scope= with Basic credentials returns
    an RS256 JWT (x5c header) that distribution 2.8 verifies against ``rootcertbundle``."""

    username: str
    password: str
    service: str = "kaito-test-registry"
    issuer: str = "kaito-test-token-issuer"
    workdir: Path = field(default_factory=Path)
    requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    _server: ThreadingHTTPServer | None = None
    _key: Any = None
    _cert_der: bytes = b""

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    @property
    def cert_path(self) -> Path:
        return self.workdir / "token-cert.pem"

    def start(self) -> TokenServer:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kaito-test-token")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                outer.requests.append(
                    {
                        "path": urlparse(self.path).path,
                        "query": query,
                        "authorization": self.headers.get("Authorization", ""),
                    }
                )
                expected = "Basic " + base64.b64encode(f"{outer.username}:{outer.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"details":"bad credentials"}')
                    return
                token = outer.issue(query.get("scope", []))
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                """The OAuth2 refresh-token grant (an ``identitytoken`` in a Docker config, as ACR uses)."""
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                outer.requests.append({"path": urlparse(self.path).path, "query": form, "authorization": ""})
                if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
                    outer.refresh_token
                ]:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                token = outer.issue(form.get("scope", []))
                body = json.dumps({"access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def issue(self, scopes: list[str]) -> str:
        import jwt

        access = []
        for scope in scopes:
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name:
                    access.append(
                        {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}
                    )
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.username,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        headers = {"x5c": [base64.b64encode(self._cert_der).decode()]}
        return str(jwt.encode(claims, self._key, algorithm="RS256", headers=headers))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A plain (anonymous) registry shared by the whole session."""
    external = os.environ.get("KAITO_TEST_REGISTRY")
    if external:
        yield RegistryServer(host=external)
        return
    server = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    """``make(auth=None | "htpasswd" | "token", username=..., password=...)`` -> a fresh registry with
    its own storage directory (``.root``), stopped at teardown."""
    started: list[RegistryServer] = []

    def make(
        auth: str | None = None, username: str = "kaito", password: str = "s3cret-Pa55"
    ) -> RegistryServer:
        workdir = tmp_path / f"registry-{len(started)}"
        if auth is None:
            server = start_registry(workdir)
        elif auth == "htpasswd":
            server = start_registry(workdir, htpasswd=(username, password))
        elif auth == "token":
            token_server = TokenServer(username=username, password=password, workdir=workdir).start()
            server = start_registry(workdir, token_server=token_server)
        else:
            raise ValueError(f"unknown auth {auth!r}")
        started.append(server)
        return server

    yield make
    for server in started:
        with contextlib.suppress(Exception):
            server.stop()
