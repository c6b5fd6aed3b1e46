"""Request bodies as strict JSON: what Python's json module lets through but no client should send is a
422 naming the field, never a 500 further in.

- ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259); Python accepts them, and a ``NaN``
  then passes every ``>=`` check. Refused.
- Numbers that do not fit: a float literal that overflows to infinity (``1e400``), an integer outside
  64 bits (``10**400`` as digits; Python would build it, then fail converting it to a float or a C
  type). Refused.
- Strings with lone surrogates (``"\\ud800"``): valid JSON escapes, but no UTF-8 encodes them, so the
  tokenizer would fail on them. Refused.
- Nesting deeper than :data:`MAX_DEPTH` (no field of these APIs nests nearly so deep). Refused, and
  the parser's own recursion limit is caught rather than answered with 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
_INT_LIMIT = 2**63 - 1
_INT_DIGITS = 20  # longer digit strings are never inside 64 bits; they are not even converted


class BodyError(ValueError):
    """What is wrong with the body, and where (a dotted path, ``body`` for the whole)."""

    def __init__(self, message: str, path: str = "body") -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class _NonStandard:
    def __init__(self, text: str) -> None:
        self.text = text


class _HugeInt:
    def __init__(self, digits: str) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _HugeInt:
    if len(text.lstrip("-")) > _INT_DIGITS:
        return _HugeInt(text)
    return int(text)


def loads(raw: bytes | str) -> Any:
    """The document in ``raw``; BodyError naming the first offending field otherwise."""
    try:
        data = json.loads(raw, parse_constant=_NonStandard, parse_int=_parse_int)
    except RecursionError:
        raise BodyError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError as exc:  # bytes that are not UTF-8
        raise BodyError(f"malformed JSON ({exc})") from None
    check(data)
    return data


def check(data: Any) -> None:
    """Walk the document (iteratively: depth is what is being checked) for the values refused above."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise BodyError(f"JSON nested deeper than {MAX_DEPTH} levels", _dotted(path[:MAX_DEPTH]))
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, path)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(i))) for i, item in enumerate(value))
        elif isinstance(value, _NonStandard):
            raise BodyError(f"{value.text} is not a JSON number; send a finite number", _dotted(path))
        elif isinstance(value, _HugeInt) or (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT_LIMIT
        ):
            raise BodyError("the number is outside the 64-bit integer range", _dotted(path))
        elif isinstance(value, float) and not math.isfinite(value):
            raise BodyError("the number is too large to be represented; send a finite number", _dotted(path))


def _check_text(text: str, path: tuple[str, ...]) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(
            "the string has a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape); send valid Unicode",
            _dotted(path),
        ) from None


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "body"
