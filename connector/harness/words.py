"""A schema property's type and a field's default in words, for people (``describe`` and the
generated reference): "list of text", "whole number or none", "map of text to one of 0, 1, 2",
never a schema's JSON such as ``['string']``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

_WORDS = {"string": "text", "integer": "whole number", "number": "number", "boolean": "true/false",
          "object": "object", "array": "list", "null": "none"}


def _kinds(prop: Mapping[str, Any]) -> list[str]:
    kinds = prop.get("type", [])
    return list(kinds) if isinstance(kinds, list) else [kinds]


def choices_words(prop: Mapping[str, Any]) -> str | None:
    """"one of 0, 1, 2" for an ``enum`` or a ``oneOf`` of constants (text quoted); None otherwise."""
    options = prop.get("oneOf") or ()
    if "enum" in prop:
        values = list(prop["enum"])
    elif options and all(isinstance(o, Mapping) and "const" in o for o in options):
        values = [o["const"] for o in options]
    else:
        return None
    shown = ["none" if v is None else json.dumps(v, ensure_ascii=False) for v in values]
    return "one of " + ", ".join(shown)


def _list_words(items: Any) -> str:
    if not isinstance(items, Mapping) or not items:
        return "list"
    pair = items.get("prefixItems")
    if _kinds(items) == ["array"] and isinstance(pair, list) and len(pair) == 2:
        both = {type_words(p) for p in pair}
        return f"list of [key, value] pairs of {both.pop()}" if len(both) == 1 else "list of [key, value] pairs"
    return f"list of {type_words(items)}"


def _one_kind(kind: str, prop: Mapping[str, Any]) -> str:
    if kind == "array":
        return _list_words(prop.get("items"))
    if kind == "object" and isinstance(prop.get("additionalProperties"), Mapping):
        return f"map of text to {type_words(prop['additionalProperties'])}"
    if kind == "string" and prop.get("contentEncoding") == "base64":
        return "bytes (text, or base64 when not UTF-8)"
    return _WORDS.get(kind, kind)


def type_words(prop: Mapping[str, Any]) -> str:
    """The property's type in words: choices, each JSON type (a list's items, a map's values),
    "or none" when it may be null; "any value" when the schema does not say."""
    choices = choices_words(prop)
    if choices:
        return choices
    kinds = _kinds(prop)
    if not kinds:
        return "any value"
    words = [_one_kind(k, prop) for k in kinds if k != "null"]
    return " or ".join(words + (["none"] if "null" in kinds else []))


def value_words(value: Any) -> str:
    """A default or an example as people read it: "empty" for "" and empty lists and maps, "none"
    for null, text in quotes, a list's items separated by commas, anything else as JSON."""
    if value is None:
        return "none"
    if value in ("", [], {}):
        return "empty"
    if isinstance(value, list):
        return ", ".join(value_words(v) for v in value)
    return json.dumps(value, ensure_ascii=False)
