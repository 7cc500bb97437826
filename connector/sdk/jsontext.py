"""Strict JSON for configuration files: the one loader every file a person writes goes through.

``json.loads`` lets through what a person never meant and what later breaks far from the file:
``NaN`` and ``Infinity`` (not JSON; a timeout of NaN is never reached), numbers of thousands of
digits (Python refuses to convert them to text, even in an error message), a key given twice
(the last silently wins) and nesting deep enough to exhaust the stack. Each is refused here with
a sentence that completes "the connection file 'c.json' ...".
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Deeper than any configuration needs; shallow enough for every later step (validation, repr).
MAX_DEPTH = 64
#: Digits of a whole number: more than any port, count or number of seconds has.
MAX_DIGITS = 20


class JsonError(ValueError):
    """Why a text is not acceptable JSON, as the end of a sentence about the file."""


def loads(text: str) -> Any:
    """Parse ``text`` strictly; raise :class:`JsonError` (never RecursionError, never a bare ValueError)."""
    if text.startswith("\ufeff"):
        raise JsonError("starts with a byte order mark (BOM): save it as UTF-8 without one")
    if not text.strip():
        raise JsonError("is empty: it must hold a JSON object")
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_int=_int,
                           parse_float=_float)
    except json.JSONDecodeError as exc:
        raise JsonError(f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonError(f"is not valid JSON here: it nests lists and objects more than {MAX_DEPTH} levels "
                        "deep") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_DEPTH:
                    raise JsonError(f"is not valid JSON here: it nests lists and objects more than {MAX_DEPTH} "
                                    "levels deep")
                stack.append((child, depth + 1))


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            shown = key if len(key) <= 80 else key[:80] + "..."
            raise JsonError(f"gives the key {json.dumps(shown, ensure_ascii=False)} twice: give each field once")
        found[key] = value
    return found


def _constant(name: str) -> float:
    raise JsonError(f"holds {name}, which is not a number in JSON: give a finite number")


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise JsonError(f"holds a whole number of {digits:,} digits: at most {MAX_DIGITS} are allowed")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 30 else text[:30] + "..."
        raise JsonError(f"holds the number {shown}, too large to be a finite number")
    return value
