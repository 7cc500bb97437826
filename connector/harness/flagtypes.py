"""How a generated flag reads its value from text, as its schema property says
(:mod:`connector.harness.flags`): whole numbers, finite numbers, choices, KEY=VALUE pairs (typed
for an object's ``additionalProperties``), JSON; argparse's keywords for each kind of property."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from typing import Any


def types_of(prop: Mapping[str, Any]) -> list[str]:
    kinds = prop.get("type", [])
    return [k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null"]


def choices_of(prop: Mapping[str, Any]) -> list[Any] | None:
    if "enum" in prop:
        return [v for v in prop["enum"] if v is not None]
    options = prop.get("oneOf") or ()
    if options and all(isinstance(o, Mapping) and "const" in o for o in options):
        return [o["const"] for o in options if o["const"] is not None]
    return None


def number(text: str) -> float:
    """A number flag's value: NaN and infinities (also ``1e999``) are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _scalar(prop: Mapping[str, Any]) -> Callable[[str], Any]:
    """How one value of ``prop`` is read from text (choices are checked by the caller)."""
    choices, kinds = choices_of(prop), types_of(prop)
    if choices:
        kinds = ["integer"] if all(type(c) is int for c in choices) else kinds
    return {"integer": int, "number": number, "boolean": _boolean}.get(kinds[0] if len(kinds) == 1 else "", str)


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _pair(text: str) -> list[str]:
    return list(_key_value(text))


_WORDS: dict[Callable[[str], Any], str] = {int: "a whole number", number: "a finite number",
                                           _boolean: "true or false"}


def _typed_pair(prop: Mapping[str, Any]) -> Callable[[str], tuple[str, Any]]:
    """KEY=VALUE with VALUE read as ``prop`` (an object's ``additionalProperties``) says."""
    convert, choices = _scalar(prop), choices_of(prop)

    def pair(text: str) -> tuple[str, Any]:
        key, raw = _key_value(text)
        try:
            value = convert(raw)
        except (ValueError, argparse.ArgumentTypeError):
            value = None
        if value is None or (choices and value not in choices):
            shown = f"one of {', '.join(map(str, choices))}" if choices else _WORDS.get(convert, "text")
            raise argparse.ArgumentTypeError(f"{text!r}: the value after '=' must be {shown}")
        return key, value

    return pair


def _json(text: str) -> Any:
    from connector.sdk.jsontext import JsonError, loads

    try:
        return loads(text)
    except JsonError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} {exc}") from None


def argparse_options(prop: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """add_argument's keywords for a property of ``kind`` (without name, help and metavar)."""
    if kind in ("true", "false"):
        return {"action": f"store_{kind}", "default": None}
    if kind == "choice":
        return {"type": _scalar(prop), "choices": choices_of(prop)}
    if kind == "map":
        return {"action": "append", "type": _typed_pair(prop.get("additionalProperties", {}))}
    return {"text": {}, "integer": {"type": int}, "number": {"type": number}, "json": {"type": _json},
            "list": {"action": "append"}, "text-or-list": {"action": "append"},
            "pairs": {"action": "append", "type": _pair}}[kind]
