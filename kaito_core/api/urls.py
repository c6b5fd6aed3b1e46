"""Is a data URL safe to fetch from inside the cluster? Pure: literal addresses and names, no DNS.

Tuning input URLs are downloaded by a pod in the user's cluster, so a URL aimed at the node, the cloud
metadata service or a private network would let a Workspace author read what they should not (SSRF).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

#: Host names that always point at the machine itself or at a cloud metadata service.
BLOCKED_HOSTS = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "kubernetes",
        "kubernetes.default",
    }
)
#: Suffixes of names that only resolve inside a private network or the cluster.
BLOCKED_SUFFIXES = (
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".svc",
    ".cluster.local",
    ".home.arpa",
)


def url_problem(url: str) -> str | None:
    """Why ``url`` must not be fetched, or None when it is an http(s) URL to a public host."""
    try:
        parts = urlsplit(url.strip())
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as exc:
        return f"invalid data source URL: {url!r} ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"data source URL must use HTTP or HTTPS: {url!r}"
    if not hostname:
        return f"invalid data source URL: {url!r} has no host"
    host = hostname.rstrip(".").lower()
    if host in BLOCKED_HOSTS or host.endswith(BLOCKED_SUFFIXES):
        return (f"data source URL must not target a local or metadata endpoint: {url!r} points at a local, "
                f"cluster-internal or metadata host ({host}); use a public URL")
    address = _literal_address(host)
    if address is not None and _is_internal(address):
        return (f"data source URL must not target a loopback, private, or link-local address: {url!r} "
                f"points at a non-public address ({address}); use a public URL")
    return None


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP a host name spells literally, in any form an HTTP client accepts (127.1, 0x7f000001)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            # inet_aton parses the legacy forms (decimal, octal, hex, short) without any lookup
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None and _is_internal(embedded):
            return True
    return not address.is_global or address.is_multicast
