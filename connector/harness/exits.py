"""The command line's exit codes (see ../shared/CONTRACT.md) and its own kind of bad input."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CONNECT = 0, 1, 2, 3
#: The reader of standard output went away (``listen | head -1``): 128 + SIGPIPE, as for any
#: Unix tool that SIGPIPE ends.
EXIT_CLOSED = 141


class UsageError(Exception):
    """Bad input found by the command line itself (exit 2)."""
