"""The FakeHub (kaito_testing.hub) started per test, with the client pointed at it through HF_ENDPOINT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kaito_testing.hub import FakeHub

from kaito_core.artifacts.hub import HubClient

TOKEN = "hf_reader_token_0123456789"  # a token the fake Hub knows
OTHER_TOKEN = "hf_other_token_9876543210"  # known, but granted nothing


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(tokens={TOKEN: "reader", OTHER_TOKEN: "other"}) as server:
        yield server


@pytest.fixture
def hf_env(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_ENDPOINT at the fake, an empty cache of the test's own, no token, online."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return cache


@pytest.fixture
def client(hf_env: Path) -> HubClient:
    return HubClient()
