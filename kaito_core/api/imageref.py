"""Container image references checked as KAITO checks them: ``reference.ParseDockerRef`` of
``github.com/distribution/reference``, with its error texts.

KAITO's webhook refuses a tuning input, tuning output or adapter image that this parser refuses
("Unable to parse input image reference: invalid reference format"). The grammar is distribution's:
``[domain/]path[:tag][@digest]``, path components lowercase, an upper-case repository reported as such.
Pure: no I/O (the artifacts layer has its own parser for the references it pulls).
"""

from __future__ import annotations

import re

INVALID_FORMAT = "invalid reference format"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")


def image_reference_problem(image: str) -> str | None:
    """distribution's error for ``image`` (``invalid reference format...``), or None when it parses."""
    if _ANCHORED_IDENTIFIER.match(image):
        return f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings"
    domain, remainder = _split_domain(image)
    remote = remainder.split(":", 1)[0]  # distribution cuts at the first colon, digests included
    if remote.lower() != remote:
        return f"{INVALID_FORMAT}: repository name ({remote}) must be lowercase"
    match = _REFERENCE.match(f"{domain}/{remainder}")
    if match is None:
        return INVALID_FORMAT
    if len(match.group(1)) > NAME_TOTAL_LENGTH_MAX:
        return f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
    digest = match.group(3)
    if digest and digest.startswith("sha256:") and len(digest) != len("sha256:") + 64:
        return "invalid checksum digest length"
    return None


def _split_domain(name: str) -> tuple[str, str]:
    """distribution's splitDockerDomain: the first component is a domain only when it looks like one."""
    first, sep, rest = name.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = "docker.io", name
    else:
        domain, remainder = first, rest
    if domain == "docker.io" and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder
