"""Is the port free? Checked before the model is started, so a taken port fails in milliseconds."""

from __future__ import annotations

import errno
import socket

from kaito_core.local.errors import LocalRunError


def _bind(host: str, port: int) -> OSError | None:
    """Try to bind like the server will (SO_REUSEADDR, as uvicorn does); the error, or None."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                return exc
    return None


def free_port_near(host: str, port: int, tries: int = 50) -> int | None:
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        if _bind(host, candidate) is None:
            return candidate
    return None


def check_port(host: str, port: int) -> None:
    """Raise a clear LocalRunError when ``host:port`` cannot be listened on."""
    if not 0 < port < 65536:
        raise LocalRunError(f"--port {port} is not a TCP port (1-65535)")
    error = _bind(host, port)
    if error is None:
        return
    if isinstance(error, socket.gaierror):
        raise LocalRunError(f"--host {host!r} is not an address of this machine ({error.strerror})")
    if error.errno == errno.EADDRINUSE:
        other = free_port_near(host, port)
        hint = f"; port {other} is free: --port {other}" if other else "; choose another with --port"
        raise LocalRunError(f"port {port} on {host} is already in use by another process{hint}")
    if error.errno == errno.EACCES:
        raise LocalRunError(f"port {port} on {host} needs privileges to listen on; use --port 1024 or above")
    if error.errno == errno.EADDRNOTAVAIL:
        raise LocalRunError(f"--host {host} is not an address of this machine")
    raise LocalRunError(f"cannot listen on {host}:{port}: {error.strerror or error}")
