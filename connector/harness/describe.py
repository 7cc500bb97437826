"""``describe``: a connector, its connection fields and its Options tab, for a person."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from connector.harness.words import type_words, value_words
from connector.sdk.manifest import Manifest

WIDTH = 100


def _wrap(text: str, indent: int) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * indent)


def _type(prop: dict[str, Any]) -> str:
    if "oneOf" in prop:
        return "one of the choices below"
    return type_words(prop)


def _default(prop: dict[str, Any]) -> str:
    return f", default {value_words(prop['default'])}" if "default" in prop else ""


def _fields(schema: dict[str, Any], lines: list[str]) -> None:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name in schema.get("x-order", list(props)):
        prop = props[name]
        flags = []
        if name in required:
            flags.append("required")
        if prop.get("writeOnly"):
            flags.append("secret, never shown")
        note = f"{_type(prop)}{_default(prop)}" + (f"; {', '.join(flags)}" if flags else "")
        lines.append(f"  {prop.get('title', name)}  [{name}: {note}]")
        if prop.get("description"):
            lines.append(_wrap(prop["description"], 6))
        for option in prop.get("oneOf", []):
            if "const" in option:
                default = " (default)" if prop.get("default") == option["const"] and "default" in prop else ""
                title, const = option.get("title", ""), json.dumps(option["const"])
                label = title if title.startswith(const) else f"{const}  {title}"
                lines.append(f"      {label}{default}")
                if option.get("description"):
                    lines.append(_wrap(option["description"], 10))
        if prop.get("examples"):
            shown = [e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in prop["examples"]]
            lines.append(_wrap("examples: " + ", ".join(shown), 6))


def describe_text(manifest: Manifest) -> str:
    lines = [f"{manifest.name} connector {manifest.version} (id: {manifest.id})", _wrap(manifest.description, 2), ""]
    lines.append("Connection")
    _fields(manifest.connection_schema, lines)
    lines += ["", "Options"]
    _fields(manifest.operation_schema, lines)
    lines += ["", "Document properties"]
    for name, prop in manifest.document_properties.items():
        used = [a["title"] + (" reads" if name in a["reads"] else " writes")
                for a in manifest.actions.values() if name in a["reads"] or name in a["writes"]]
        lines.append(f"  {name}  [{type_words(prop)}; {', '.join(used)}]")
        lines.append(_wrap(prop["description"], 6))
    return "\n".join(lines)
