"""The command line as a user runs it, for the tests: ``python -m connector ARGS`` as a subprocess.

A module of its own rather than conftest.py: test folders each have a conftest, and a module
imports helpers by a name that only one file answers to."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, input: bytes | None = None, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m connector ARGS`` as a user would; bytes in, bytes out."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "connector", *args], input=input, capture_output=True,
                          timeout=timeout, env=full_env)


def start_cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m connector ARGS`` in the background (stop it by its own pid)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "connector", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=full_env)
