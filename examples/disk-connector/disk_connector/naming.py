"""The file-name template of a Send: ``{index}``, ``{uuid}``, ``{timestamp}`` and document properties.

A template is checked once (:func:`template_problem`): only plain names in braces, each with an
optional format spec (``{index:06d}``); no attribute or item access (``{name.upper}``), no
conversion (``{name!r}``). The name made for a document is checked too (:func:`name_problem`): a
name that could leave the folder, hide as a temporary file or not be a file name at all is that
document's refusal, never a file somewhere else.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

#: The names the template knows besides the document's properties.
BUILT_IN = ("index", "uuid", "timestamp")
#: The longest file name a Send makes, in bytes of UTF-8: the temporary name adds 38 to it, and
#: most file systems take 255.
MAX_NAME_BYTES = 200

_formatter = string.Formatter()


class Unnamable(ValueError):
    """The template cannot make a name for this document (the message says why)."""


def _fields(template: str) -> Iterator[tuple[str, str]]:
    """``(field name, format spec)`` of each replacement field; ValueError for a broken template."""
    for _, name, spec, conversion in _formatter.parse(template):
        if name is None:
            continue
        if conversion is not None:
            raise ValueError(f"'{{{name}!{conversion}}}' is not allowed: write '{{{name}}}'")
        if not name.isidentifier():
            shown = name or ""
            raise ValueError(f"'{{{shown}}}' is not a field: give {{index}}, {{uuid}}, {{timestamp}} or a "
                             "document property's name")
        if "{" in (spec or ""):
            raise ValueError(f"the format of '{{{name}}}' must not hold another field")
        yield name, spec or ""


def template_problem(template: str) -> str | None:
    """Why ``template`` is not a usable file-name template, or None."""
    try:
        fields = list(_fields(template))
    except ValueError as exc:
        return str(exc)
    if any(c in literal for literal, *_ in _formatter.parse(template) for c in "/\\"):
        return "must make a file name: a path separator would lead into another folder"
    samples: dict[str, Any] = {"index": 0, "uuid": "0" * 32, "timestamp": "20000101T000000.000000Z"}
    for name, spec in fields:
        if name in samples:
            try:
                format(samples[name], spec)
            except ValueError as exc:
                return f"'{{{name}:{spec}}}': {exc}"
    return None


def timestamp(now: datetime | None = None) -> str:
    """UTC, to the microsecond, sortable and safe in every file system: 20240501T120000.123456Z."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")


def render(template: str, index: int, properties: Mapping[str, Any]) -> str:
    """The file name ``template`` makes for the document ``index`` with ``properties``.

    :raises Unnamable: a property the template names is missing, a value does not take its
        format, or the name is not a safe file name (:func:`name_problem`).
    """
    parts = []
    for literal, name, spec, _ in _formatter.parse(template):
        parts.append(literal)
        if name is None:
            continue
        if name == "index":
            value: Any = index
        elif name == "uuid":
            value = uuid.uuid4().hex
        elif name == "timestamp":
            value = timestamp()
        elif name in properties:
            value = properties[name]
            if isinstance(value, (bytes, bytearray)):
                value = bytes(value).decode("utf-8", "replace")
        else:
            raise Unnamable(f"the file-name template needs the document property {name!r}, which this "
                             "document does not have")
        try:
            parts.append(format(value, spec or ""))
        except (ValueError, TypeError) as exc:
            raise Unnamable(f"the document property {name!r} does not take the format {spec!r}: {exc}") from None
    made = "".join(parts)
    problem = name_problem(made)
    if problem is not None:
        raise Unnamable(f"the file-name template made {_shown(made)}, which {problem}")
    return made


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a file name a Send may create in its folder, or None."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is not a file name"
    if "/" in name or "\\" in name:
        return "holds a path separator: a file name must not lead into another folder"
    if "\0" in name:
        return "holds a NUL character"
    if name.startswith("."):
        return "starts with '.': such names are temporary files, which a Listen never takes"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    if any(ord(c) < 32 for c in name):
        return "holds a control character"
    return None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 80 else name[:80] + "...")
