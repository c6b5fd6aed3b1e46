"""kaito's Hub client (kaito_core.artifacts.hub) through huggingface_hub against the FakeHub."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
from kaito_testing.hub import FakeHub

from kaito_core.artifacts.hub import HubClient, HubError, HubFile, HubListing, check_file

from .conftest import OTHER_TOKEN, TOKEN

SHARD_1 = b"\x01" * 40_000
SHARD_2 = b"\x02" * 30_000
INDEX = '{"metadata": {"total_size": 70000}, "weight_map": {"a": "model-00001-of-00002.safetensors"}}'
FILES = {
    "config.json": '{"model_type": "llama", "num_hidden_layers": 2}',
    "model.safetensors.index.json": INDEX,
    "model-00001-of-00002.safetensors": SHARD_1,
    "model-00002-of-00002.safetensors": SHARD_2,
    "tokenizer.json": "{}",
}


def test_resolve_branch_tag_and_commit(hub: FakeHub, client: HubClient) -> None:
    first = hub.add_repo("org/m", FILES)
    hub.tag("org/m", "v1.0", first)
    second = hub.commit("org/m", {"tokenizer.json": '{"v": 2}'})
    assert client.resolve("org/m") == second
    assert client.resolve("org/m", "main") == second
    assert client.resolve("org/m", "v1.0") == first
    assert client.resolve("org/m", first) == first


def test_listing_has_sizes_and_the_lfs_sha256(hub: FakeHub, client: HubClient) -> None:
    sha = hub.add_repo("org/m", FILES)
    listing = client.listing("org/m")
    assert listing.sha == sha
    assert listing.file("model-00001-of-00002.safetensors") == HubFile(
        "model-00001-of-00002.safetensors", 40_000, hashlib.sha256(SHARD_1).hexdigest(),
        listing.file("model-00001-of-00002.safetensors").blob_id,  # type: ignore[union-attr]
    )
    assert listing.file("config.json").size == len(FILES["config.json"])  # type: ignore[union-attr]
    assert listing.file("config.json").sha256 is None  # type: ignore[union-attr]
    assert [f.path for f in listing.safetensors] == ["model-00001-of-00002.safetensors",
                                                     "model-00002-of-00002.safetensors"]
    assert not listing.gated


def test_config_and_index_at_a_pinned_commit(hub: FakeHub, client: HubClient) -> None:
    first = hub.add_repo("org/m", FILES)
    listing = client.listing("org/m")
    hub.commit("org/m", {"config.json": '{"model_type": "qwen2"}'})  # the branch moves on
    assert client.config("org/m", listing.sha)["model_type"] == "llama"
    assert client.config("org/m")["model_type"] == "qwen2"
    assert client.safetensors_index("org/m", listing)["metadata"]["total_size"] == 70_000
    assert listing.sha == first


def test_single_file_model_gets_an_index_from_the_listing(hub: FakeHub, client: HubClient) -> None:
    hub.add_repo("org/one", {"config.json": "{}", "model.safetensors": SHARD_1})
    listing = client.listing("org/one")
    index = client.safetensors_index("org/one", listing)
    assert index == {"metadata": {"total_size": 40_000}, "weight_map": {}}


def test_no_safetensors_is_an_actionable_error(hub: FakeHub, client: HubClient) -> None:
    hub.add_repo("org/bin", {"config.json": "{}", "pytorch_model.bin": SHARD_1})
    with pytest.raises(HubError, match=r"has neither model\.safetensors\.index\.json nor model\.") as err:
        client.safetensors_index("org/bin", client.listing("org/bin"))
    assert err.value.kind == "entry-not-found"


def test_download_files_verified_into_a_local_dir(hub: FakeHub, client: HubClient, tmp_path: Path) -> None:
    hub.add_repo("org/m", FILES)
    listing = client.listing("org/m")
    got = client.download_files(listing, local_dir=tmp_path / "weights")
    assert set(got) == set(FILES)
    assert (tmp_path / "weights" / "model-00002-of-00002.safetensors").read_bytes() == SHARD_2
    again = client.download_files(listing, ["config.json"], local_dir=tmp_path / "weights")
    assert again["config.json"].read_text() == FILES["config.json"]


def test_a_broken_transfer_is_retried(hub: FakeHub, client: HubClient) -> None:
    hub.add_repo("org/m", FILES)
    hub.truncate_next("model-00001-of-00002.safetensors", 10_000)
    listing = client.listing("org/m")
    got = client.download_files(listing, ["model-00001-of-00002.safetensors"])
    assert got["model-00001-of-00002.safetensors"].read_bytes() == SHARD_1
    cdn = [r for r in hub.requests if r.method == "GET" and r.path.startswith("/lfs-cdn/")]
    assert len(cdn) == 2


def test_a_transfer_broken_after_a_written_chunk_resumes_with_range(hub: FakeHub, client: HubClient) -> None:
    # huggingface_hub writes in 10 MiB chunks and, on a broken transfer, asks for the rest with Range
    # (a partial file is not kept across processes since huggingface_hub 1.x: each run starts afresh)
    big = bytes(range(251)) * (11 * 1024 * 1024 // 251)
    hub.add_repo("org/big", {"config.json": "{}", "model.safetensors": big})
    hub.truncate_next("model.safetensors", 10 * 1024 * 1024 + 4096)
    got = client.download_files(client.listing("org/big"), ["model.safetensors"])
    assert got["model.safetensors"].read_bytes() == big
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.path.startswith("/lfs-cdn/")]
    assert ranges == [None, f"bytes={10 * 1024 * 1024}-"]


def test_weights_never_send_the_token_to_the_cdn(hub: FakeHub, hf_env: Path) -> None:
    hub.add_repo("org/m", FILES)
    HubClient(token=TOKEN).download("org/m", "model-00002-of-00002.safetensors")
    resolve = [r for r in hub.requests if "/resolve/" in r.path]
    cdn = [r for r in hub.requests if r.path.startswith("/lfs-cdn/")]
    assert resolve and all(r.authorized for r in resolve)
    assert cdn and not any(r.authorized for r in cdn)


def test_corrupt_download_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "f.safetensors"
    local.write_bytes(b"tampered")
    listing = HubListing("org/m", "main", "a" * 40, ())
    with pytest.raises(HubError, match=r"sha256 .* does not match the Hub's") as err:
        check_file(local, HubFile("f.safetensors", 8, hashlib.sha256(b"original").hexdigest()), listing)
    assert err.value.kind == "corrupt"
    with pytest.raises(HubError, match="8 bytes downloaded, the Hub states 9"):
        check_file(local, HubFile("f.safetensors", 9, None), listing)


# ---------------------------------------------------------------------------------------------- errors


def test_unknown_repo(hub: FakeHub, client: HubClient, hf_env: Path) -> None:
    for c in (client, HubClient(token=TOKEN)):
        with pytest.raises(HubError) as err:
            c.listing("nobody/nothing")
        assert err.value.kind == "repo-not-found"
        assert str(err.value).startswith("Hugging Face repository nobody/nothing not found at http://127.0.0.1:")


def test_unknown_revision(hub: FakeHub, client: HubClient) -> None:
    hub.add_repo("org/m", FILES)
    with pytest.raises(HubError, match=r"^revision v9 not found in Hugging Face repository org/m$") as err:
        client.resolve("org/m", "v9")
    assert err.value.kind == "revision-not-found"
    with pytest.raises(HubError) as err:
        client.download("org/m", "config.json", "v9")
    assert err.value.kind == "revision-not-found"


def test_missing_file(hub: FakeHub, client: HubClient) -> None:
    sha = hub.add_repo("org/m", {"README.md": "hi"})
    with pytest.raises(HubError, match=f"^file config.json not found in org/m at revision {sha}$") as err:
        client.config("org/m", sha)
    assert err.value.kind == "entry-not-found"


def test_gated_repo_without_a_token_with_an_ungranted_one_and_granted(hub: FakeHub, hf_env: Path) -> None:
    hub.add_repo("org/gated", FILES, gated="manual")
    anonymous = HubClient()
    listing = anonymous.listing("org/gated")  # model info is public, files are not
    assert listing.gated
    with pytest.raises(HubError) as err:
        anonymous.config("org/gated", listing.sha)
    assert err.value.kind == "gated"
    assert "modelAccessSecret" in str(err.value) and "HF_TOKEN" in str(err.value)
    with pytest.raises(HubError) as err:
        HubClient(token=OTHER_TOKEN).config("org/gated", listing.sha)
    assert err.value.kind == "no-access"
    assert OTHER_TOKEN not in str(err.value)
    hub.grant("org/gated", TOKEN)
    assert HubClient(token=TOKEN).config("org/gated", listing.sha)["model_type"] == "llama"


def test_token_from_hf_token(hub: FakeHub, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_repo("org/gated", FILES, gated="auto")
    hub.grant("org/gated", TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    client = HubClient()
    assert TOKEN not in repr(client)
    assert client.config("org/gated")["num_hidden_layers"] == 2


def test_a_token_the_hub_does_not_know(hub: FakeHub, hf_env: Path) -> None:
    hub.add_repo("org/m", FILES)
    with pytest.raises(HubError) as err:
        HubClient(token="hf_not_a_real_token").config("org/m")
    assert err.value.kind == "unauthorized"
    assert "hf_not_a_real_token" not in str(err.value)


def test_invalid_repo_id(client: HubClient) -> None:
    with pytest.raises(HubError) as err:
        client.listing("not a repo")
    assert err.value.kind in {"invalid", "repo-not-found"}


def test_hub_unreachable(hf_env: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HubClient(endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(HubError) as err:
        client.listing("org/m")
    assert err.value.kind == "connection"
    expected = f"could not reach the Hub at http://127.0.0.1:{port} for org/m@main: connection refused"
    assert str(err.value) == expected


# ---------------------------------------------------------------------------------------------- offline


def test_offline_answers_from_the_cache(hub: FakeHub, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sha = hub.add_repo("org/m", FILES)
    online = HubClient()
    online.download_files(online.listing("org/m"), ["config.json", "model-00001-of-00002.safetensors"])
    hub.stop()  # no Hub from here on
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = HubClient()
    assert offline.offline
    assert offline.resolve("org/m") == sha
    assert offline.config("org/m")["model_type"] == "llama"
    listing = offline.listing("org/m")
    assert listing.sha == sha
    shard = listing.file("model-00001-of-00002.safetensors")
    assert shard is not None and shard.sha256 == hashlib.sha256(SHARD_1).hexdigest()
    with pytest.raises(HubError) as err:
        offline.read_json("org/m", "model.safetensors.index.json", sha)
    assert err.value.kind == "offline"
    message = str(err.value)
    assert f"model.safetensors.index.json of org/m@{sha} is not in the Hugging Face cache at {hf_env}" \
        in message
    assert f"hf download org/m model.safetensors.index.json --revision {sha}" in message


def test_offline_with_nothing_cached(hf_env: Path) -> None:
    offline = HubClient(offline=True)
    with pytest.raises(HubError) as err:
        offline.resolve("org/m", "main")
    assert err.value.kind == "offline"
    assert str(err.value).startswith(f"offline, and org/m@main is not in the Hugging Face cache at {hf_env}")
