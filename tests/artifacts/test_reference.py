"""References, Docker config credentials, challenges and media types (no network)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kaito_core.artifacts import ArtifactError, Credentials, Reference, mediatypes
from kaito_core.artifacts.auth import (
    find_credentials,
    load_docker_config,
    parse_challenge,
    resolve_credentials,
)
from kaito_core.artifacts.reference import is_loopback

DIGEST = "sha256:" + "ab" * 32


def test_parse_registry_references() -> None:
    ref = Reference.parse("127.0.0.1:5000/models/gemma:q4")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "127.0.0.1:5000",
        "models/gemma",
        "q4",
        None,
    )
    pinned = Reference.parse(f"ghcr.io/org/model:v1@{DIGEST}")
    assert (pinned.tag, pinned.digest, pinned.target) == ("v1", DIGEST, DIGEST)
    assert Reference.parse(f"localhost/m@{DIGEST}").tag is None
    hub = Reference.parse("ubuntu")
    assert (hub.registry, hub.repository, hub.tag, hub.api_host) == (
        "docker.io",
        "library/ubuntu",
        "latest",
        "registry-1.docker.io",
    )
    assert str(Reference.parse("myreg.io:443/a/b:c")) == "myreg.io:443/a/b:c"


def test_parse_layout_references(tmp_path: Path) -> None:
    ref = Reference.parse(f"oci:{tmp_path}/store:gemma-q4")
    assert ref.is_layout and ref.layout == tmp_path / "store" and ref.tag == "gemma-q4"
    pinned = Reference.parse(f"oci:{tmp_path}/store@{DIGEST}")
    assert pinned.digest == DIGEST and pinned.tag is None
    assert Reference.parse(f"oci:{tmp_path}/store").tag == "latest"
    both = Reference.parse(f"oci:{tmp_path}/store:gemma@{DIGEST}")
    assert (both.layout, both.tag, both.digest) == (tmp_path / "store", "gemma", DIGEST)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("reg.io/UPPER/case:1", "invalid repository"),
        ("reg.io/a/b:bad tag", "invalid tag"),
        ("reg.io/a/b@sha256:1234", "invalid digest"),
        ("oci::tag", "missing directory"),
    ],
)
def test_bad_references_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ArtifactError, match=fragment):
        Reference.parse(text)


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost") and is_loopback("[::1]:5000")
    assert not is_loopback("10.0.0.1:5000") and not is_loopback("registry.example.com")


def test_docker_config_auth_and_username_password(tmp_path: Path) -> None:
    config = tmp_path / ".dockerconfigjson"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://myreg.example.com/v1/": {"auth": base64.b64encode(b"alice:pa:ss").decode()},
                    "127.0.0.1:5000": {"username": "bob", "password": "hunter2"},
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"carol:pw").decode()},
                }
            }
        )
    )
    creds = load_docker_config(config)
    assert creds["myreg.example.com"] == Credentials("alice", "pa:ss")
    assert creds["127.0.0.1:5000"] == Credentials("bob", "hunter2")
    assert find_credentials("registry-1.docker.io", [config]) == Credentials("carol", "pw")
    assert find_credentials("other.io", [config]) is None
    assert "hunter2" not in repr(creds["127.0.0.1:5000"])


def test_docker_config_env_and_explicit_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir = tmp_path / "docker"
    env_dir.mkdir()
    (env_dir / "config.json").write_text(
        json.dumps({"auths": {"r.io": {"username": "env", "password": "x"}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(env_dir))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_credentials("r.io") == Credentials("env", "x")
    explicit = tmp_path / "secret.json"
    explicit.write_text(json.dumps({"auths": {"r.io": {"username": "explicit", "password": "y"}}}))
    assert resolve_credentials("r.io", registry_configs=[explicit]) == Credentials("explicit", "y")
    with pytest.raises(ArtifactError, match="does not exist"):
        resolve_credentials("r.io", registry_configs=[tmp_path / "missing.json"])


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("not json", "not valid JSON"),
        ('{"auths": {"r.io": {"auth": "%%%"}}}', "not base64"),
        ('{"auths": {"r.io": {"auth": "' + base64.b64encode(b"nocolon").decode() + '"}}}', "user:password"),
    ],
)
def test_bad_docker_config_is_named(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ArtifactError, match=fragment) as info:
        load_docker_config(path)
    assert str(path) in str(info.value)


def test_parse_challenge() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/ubuntu:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/ubuntu:pull",
    }
    assert parse_challenge('Basic realm="kaito"') == ("basic", {"realm": "kaito"})


@pytest.mark.parametrize(
    "name, media_type",
    [
        ("model.gguf", mediatypes.WEIGHT),
        ("model-00001-of-00002.safetensors", mediatypes.WEIGHT),
        ("config.json", mediatypes.WEIGHT_CONFIG),
        ("tokenizer.model", mediatypes.WEIGHT_CONFIG),
        ("merges.txt", mediatypes.WEIGHT_CONFIG),
        ("README.md", mediatypes.DOC),
        ("LICENSE", mediatypes.DOC),
        ("modeling_phi3.py", mediatypes.CODE),
    ],
)
def test_layer_media_types(name: str, media_type: str) -> None:
    assert mediatypes.layer_media_type(name) == media_type
