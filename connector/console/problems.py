"""The SDK's validation problems placed on the form fields they are about (:func:`field_errors`).

A :class:`~connector.sdk.errors.ConfigError` from the Runtime lists its problems as
``connection PATH: sentence`` or ``operation PATH: sentence`` (the connector's own rules may say
``PATH: sentence`` or only a sentence). The page shows each sentence, as the SDK wrote it, next to
the field PATH names, or above the form when it names none.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

_SECTIONED = re.compile(r"^(connection|operation) (\S.*?): (.+)$", re.DOTALL)
_PATHED = re.compile(r"^([A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*): (.+)$", re.DOTALL)
_REQUIRED = re.compile(r"^'([^']+)' is required$")


def field_errors(problems: list[str], fields: Mapping[str, Collection[str]]) -> list[dict[str, Any]]:
    """One entry per problem: ``form`` ("connection", "operation" or None), ``path`` (the field's
    path, parts joined by ``/``; None for the form as a whole) and ``message`` (the sentence).
    ``fields`` names the top-level fields of each form."""
    found = []
    for problem in problems:
        form, path, message = _place(problem, fields)
        found.append({"form": form, "path": path, "message": message, "problem": problem})
    return found


def _place(problem: str, fields: Mapping[str, Collection[str]]) -> tuple[str | None, str | None, str]:
    match = _SECTIONED.match(problem)
    if match:
        form, path, message = match.groups()
        if path == "(top level)":
            required = _REQUIRED.match(message)
            return form, (required.group(1) if required else None), message
        return form, path, message
    match = _PATHED.match(problem)
    if match:
        path, message = match.groups()
        top = path.split("/", 1)[0]
        for form in ("operation", "connection"):
            if top in fields.get(form, ()):
                return form, path, message
    return None, None, problem
