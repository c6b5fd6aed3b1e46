"""Kubernetes resource quantities ("3920m", "16318412Ki", "16Gi") and how the planner prints sizes."""

from __future__ import annotations

import math
import re

from kaito_core.plugins import PlanError

_SUFFIXES = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(value: object, what: str = "quantity") -> float:
    """A Kubernetes quantity as a number (``"500m"`` -> 0.5, ``"1Gi"`` -> 1073741824)."""
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None or match.group(2) not in _SUFFIXES:
        raise PlanError(f"{what}: {text!r} is not a Kubernetes quantity (e.g. 4, 3920m, 16Gi)")
    try:
        return float(match.group(1)) * _SUFFIXES[match.group(2)]
    except ValueError:
        raise PlanError(f"{what}: {text!r} is not a Kubernetes quantity (e.g. 4, 3920m, 16Gi)") from None


def gib(n: float) -> str:
    """Bytes as GiB the way KAITO prints them: ``16Gi``, ``7.26Gi``."""
    value = n / 1024**3
    if abs(value - round(value)) < 0.005:
        return f"{round(value)}Gi"
    return f"{value:.2f}Gi"


def mebibytes(n: float) -> str:
    """Bytes rounded up to a whole MiB, as a Kubernetes quantity (memory requests)."""
    return f"{math.ceil(n / 1024**2)}Mi"
