"""Logging on stderr that never shows a secret: every secret the command line has seen is
masked in every log line and error message, whatever logged it."""

from __future__ import annotations

import logging
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


def setup_logging(verbose: bool) -> None:
    """Warnings and errors on stderr (``warning: ...``); with ``verbose``, everything, with time
    and logger. A library that is too chatty quiets its own loggers (a connector's business)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_redact)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if not verbose
                                           else "%(asctime)s %(name)s %(levelname)s: %(message)s"))
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
