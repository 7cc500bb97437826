"""Logging on stderr that never shows a secret: every secret the command line has seen is
masked in every log line and error message, whatever logged it.

``--log-format json`` (for log collectors) writes one JSON object per line instead: ``time`` (ISO
8601, UTC), ``level``, ``logger``, ``message`` and the record's extra fields; the lines the command
line writes for people (``error: ...``, summaries) go out the same way (:func:`for_people`)."""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
from typing import Any

MASK = "********"


class _Redact(logging.Filter):
    """Masks every known secret in every log line, whatever logged it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if record.exc_info:  # a traceback's messages too
                text += "\n" + logging.Formatter().formatException(record.exc_info)
                record.exc_info, record.exc_text = None, None
            record.msg, record.args = mask(text), None
        return True


_redact = _Redact()


def mask(text: str) -> str:
    """``text`` with every secret remembered so far masked."""
    for secret in _redact.secrets:
        text = text.replace(secret, MASK)
    return text


def remember_secret(value: Any) -> None:
    """Mask ``value`` (a non-empty text) from now on."""
    if isinstance(value, str) and value:
        _redact.secrets.add(value)


#: What every LogRecord holds; the rest are a record's extra fields.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _masked(value: Any) -> Any:
    """An extra field's value for JSON, every secret masked in its texts."""
    if isinstance(value, str):
        return mask(value)
    if value is None or isinstance(value, (bool, int)) or isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, dict):
        return {mask(str(k)): _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_masked(v) for v in value]
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the extra fields (and the
    exception's traceback, as ``exception``, when the record has one)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "level": str(record.levelname).lower(),
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in line:
                line[name] = _masked(value)
        if record.exc_info:
            line["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, allow_nan=False, default=str)


#: The formatter of --log-format json, None for text.
_json: JsonFormatter | None = None


def use_json(on: bool = True) -> None:
    """Write the lines for people as JSON objects from now on (before logging is set up: for the
    command line's own errors)."""
    global _json
    _json = JsonFormatter() if on else None


def for_people(text: str) -> str:
    """``text`` (lines for people: ``error: ...``, ``warning: ...``, a summary) as it goes to stderr:
    as it is, or with --log-format json each line a JSON object, its level from its start."""
    if _json is None:
        return text
    lines: list[str] = []
    for line in text.splitlines():
        level = logging.INFO
        for name, number in (("error: ", logging.ERROR), ("warning: ", logging.WARNING)):
            if line.startswith(name):
                level, line = number, line[len(name):]
        if line:
            lines.append(_json.format(logging.LogRecord("connector.harness", level, "", 0, line, None, None)) + "\n")
    return "".join(lines)


def setup_logging(verbose: bool, log_format: str = "text") -> None:
    """Warnings and errors on stderr (``warning: ...``); with ``verbose``, everything, with time
    and logger; with ``log_format`` "json", as JSON objects (:class:`JsonFormatter`). A library
    that is too chatty quiets its own loggers (a connector's business)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_redact)
    use_json(log_format == "json")
    handler.setFormatter(_json or logging.Formatter("%(levelname)s: %(message)s" if not verbose
                                                    else "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
