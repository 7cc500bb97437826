"""What the schemas cannot say about a configuration (checked before anything is opened), and
the connector's phrase for an operation."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from disk_connector.folders import folder_problems
from disk_connector.naming import template_problem


def connection_problems(connection: Mapping[str, Any]) -> list[str]:
    if "\0" in connection.get("directory", ""):
        return ["connection directory: must not hold a NUL character"]
    return []


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a glob of file names, or None."""
    if "/" in pattern or "\\" in pattern:
        return "matches file names in the folder: it must not hold '/' (name the folder in 'folder')"
    if pattern.startswith("."):
        return "must not start with '.': names starting with '.' are never taken (they are files being written)"
    try:
        re.compile(fnmatch.translate(pattern))
    except re.error as exc:
        return f"is not a valid pattern: {exc}"
    return None


def operation_problems(operation: Mapping[str, Any]) -> list[str]:
    problems = folder_problems(operation)
    action = operation.get("action")
    if action == "send":
        problem = template_problem(operation["file_name"])
        if problem is not None:
            problems.append(f"operation file_name: {problem}")
    elif action == "listen":
        problem = pattern_problem(operation["pattern"])
        if problem is not None:
            problems.append(f"operation pattern: {problem}")
    return problems


def describe_operation(operation: Mapping[str, Any]) -> str | None:
    """``to the folder 'out' (files named '{uuid}.json')`` / ``on files matching '*.csv' in 'in'``."""
    if operation.get("action") == "send":
        replace = ", replacing files of the same name" if operation.get("overwrite") else ""
        return f"to the folder {operation['folder']!r} (files named {operation['file_name']!r}{replace})"
    if operation.get("action") == "listen":
        return f"on files matching {operation['pattern']!r} in {operation['folder']!r}"
    return None
