"""Fixtures: the ARM emulator on 127.0.0.1 (HTTPS, self-signed) that the real SDK client talks to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kaito_testing.arm import FakeARM


@pytest.fixture
def arm() -> Iterator[FakeARM]:
    with FakeARM(operation_seconds=0.15) as fake:
        yield fake
