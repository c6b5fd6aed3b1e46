"""The port check `kaito run` makes before it starts a model."""

from __future__ import annotations

import socket

import pytest

from kaito_core.local.errors import LocalRunError
from kaito_core.local.ports import check_port


def test_free_port_passes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check_port("127.0.0.1", port)


def test_port_in_use_names_the_port_and_a_free_one() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LocalRunError, match=rf"port {port} on 127.0.0.1 is already in use.*--port \d+"):
            check_port("127.0.0.1", port)


@pytest.mark.parametrize(("host", "port", "message"), [
    ("127.0.0.1", 0, "not a TCP port"),
    ("127.0.0.1", 70000, "not a TCP port"),
    ("192.0.2.1", 8080, "not an address of this machine"),
    ("no-such-host.invalid", 8080, "not an address of this machine"),
])
def test_bad_host_or_port(host: str, port: int, message: str) -> None:
    with pytest.raises(LocalRunError, match=message):
        check_port(host, port)
