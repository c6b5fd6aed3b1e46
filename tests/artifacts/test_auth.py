"""Basic auth (htpasswd) and the bearer-token flow against real registries; secrets never leak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kaito_core.artifacts import ArtifactError, Credentials, inspect_artifact, pull, push


def _config(path: Path, host: str, username: str, password: str) -> Path:
    path.write_text(json.dumps({"auths": {host: {"username": username, "password": password}}}))
    return path


def test_htpasswd_right_and_wrong_password(
    registry_factory, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.docker/config.json to fall back on
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    server = registry_factory(auth="htpasswd")
    ref = f"{server.host}/secure/model:v1"
    right = Credentials(server.username, server.password)
    digest = push(model_dir, ref, credentials=right, progress=False)

    # Credentials from a .dockerconfigjson (what the operator mounts from an imagePullSecret).
    config = _config(tmp_path / ".dockerconfigjson", server.host, server.username, server.password)
    result = pull(ref, tmp_path / "out", registry_configs=[config], cache_dir=tmp_path / "c", progress=False)
    assert result.digest == digest and (tmp_path / "out" / "config.json").exists()

    wrong_password = "definitely-Wrong-pw-123"
    with pytest.raises(ArtifactError) as info:
        pull(
            ref,
            tmp_path / "bad",
            credentials=(server.username, wrong_password),
            cache_dir=tmp_path / "c",
            progress=False,
        )
    message = str(info.value)
    assert "rejected the credentials" in message and server.host in message and "401" in message
    assert wrong_password not in message and server.password not in message
    assert not (tmp_path / "bad").exists()

    with pytest.raises(ArtifactError, match="requires authentication"):
        inspect_artifact(ref, registry_configs=[])  # no credentials anywhere (HOME has none for this host)


def test_cli_wrong_password_fails_without_leaking_it(
    registry_factory, model_dir: Path, tmp_path: Path
) -> None:
    server = registry_factory(auth="htpasswd")
    push(
        model_dir,
        f"{server.host}/secure/model:v1",
        credentials=(server.username, server.password),
        progress=False,
    )
    wrong = "Wr0ng-Secret-xyz"
    config = _config(tmp_path / "config.json", server.host, server.username, wrong)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaito_core.cli.main",
            "model",
            "pull",
            f"{server.host}/secure/model:v1",
            str(tmp_path / "out"),
            "--registry-config",
            str(config),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert wrong not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "rejected the credentials" in proc.stderr


def test_bearer_token_flow(
    registry_factory, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """distribution 2.8 with auth.token: 401 Bearer challenge -> GET realm with Basic -> JWT -> Bearer."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    server = registry_factory(auth="token")
    token_server = server.token_server
    ref = f"{server.host}/tokened/model:v1"
    digest = push(model_dir, ref, credentials=(server.username, server.password), progress=False)
    result = pull(
        ref,
        tmp_path / "out",
        credentials=(server.username, server.password),
        cache_dir=tmp_path / "c",
        progress=False,
    )
    assert result.digest == digest
    scopes = [q for r in token_server.requests for q in r["query"].get("scope", [])]
    assert "repository:tokened/model:pull,push" in scopes and "repository:tokened/model:pull" in scopes
    assert all(
        q.get("service") == [token_server.service] for q in (r["query"] for r in token_server.requests)
    )

    wrong = "not-the-Token-pw"
    with pytest.raises(ArtifactError) as info:
        pull(
            ref,
            tmp_path / "bad",
            credentials=(server.username, wrong),
            cache_dir=tmp_path / "c2",
            progress=False,
        )
    assert "token service" in str(info.value) and "rejected the credentials" in str(info.value)
    assert wrong not in str(info.value)
    with pytest.raises(ArtifactError, match="requires authentication"):
        pull(ref, tmp_path / "anon", cache_dir=tmp_path / "c3", progress=False)


def test_identity_token_from_docker_config(
    registry_factory, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ``identitytoken`` (refresh token) is exchanged with POST realm grant_type=refresh_token."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    server = registry_factory(auth="token")
    ref = f"{server.host}/tokened/idtoken:v1"
    push(model_dir, ref, credentials=(server.username, server.password), progress=False)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    # ACR writes the user "00000000-0000-0000-0000-000000000000" with an empty password
                    server.host: {
                        "auth": "MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==",
                        "identitytoken": server.token_server.refresh_token,
                    }
                }
            }
        )
    )
    result = pull(ref, tmp_path / "out", registry_configs=[config], cache_dir=tmp_path / "c", progress=False)
    assert (tmp_path / "out" / "config.json").exists() and result.bytes_downloaded > 0
    assert any(r["query"].get("grant_type") == ["refresh_token"] for r in server.token_server.requests)
