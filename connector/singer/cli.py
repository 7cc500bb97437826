"""Console scripts ``tap-ID`` / ``target-ID`` (the connector's id is in the script's name) and
``python -m connector.singer tap|target --connector ID [Singer options]``.

They run singer-sdk's command line (``--about``, ``--config``, ``--discover``, ``--catalog``,
``--state``, ``--input``) and turn the connector's errors into one line on standard error with
the exit codes of the harness: 1 some records failed, 2 bad configuration, 3 cannot connect.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from connector.harness.exits import EXIT_BAD_INPUT, EXIT_CONNECT, EXIT_FAILED
from connector.sdk.errors import ConfigError, ConnectError, ConnectorError, PluginError

_KINDS = ("tap", "target")


def _error(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    return code


def run(kind: str, connector_id: str, argv: Sequence[str]) -> int:
    """Run the Singer ``kind`` (tap or target) of ``connector_id`` with singer-sdk's ``argv``."""
    try:
        if kind == "tap":
            from connector.singer.tap import tap_class as make
        else:
            from connector.singer.target import target_class as make
    except ImportError as exc:
        return _error(f"the Singer adapter needs singer-sdk ({exc}): pip install 'mqtt-connector[singer]'",
                      EXIT_BAD_INPUT)
    from connector.singer.target import RecordsFailed

    try:
        cls = make(connector_id)
        cls.cli.main(args=list(argv), prog_name=cls.name, standalone_mode=True)
    except RecordsFailed as exc:
        return _error(str(exc), EXIT_FAILED)
    except (ConfigError, PluginError) as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    except ConnectError as exc:
        return _error(str(exc), EXIT_CONNECT)
    except ConnectorError as exc:
        return _error(str(exc), EXIT_FAILED)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else _error(str(exc.code), 1))
    return 0


def _from_script_name(kind: str) -> int:
    script = os.path.basename(sys.argv[0])
    prefix = f"{kind}-"
    if not script.startswith(prefix) or len(script) == len(prefix):
        return _error(f"this script's name says no connector: call it {prefix}ID, or run "
                      f"python -m connector.singer {kind} --connector ID", EXIT_BAD_INPUT)
    return run(kind, script[len(prefix):], sys.argv[1:])


def tap() -> int:
    """The console script ``tap-ID``: the Singer tap of the connector ID."""
    return _from_script_name("tap")


def target() -> int:
    """The console script ``target-ID``: the Singer target of the connector ID."""
    return _from_script_name("target")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m connector.singer tap|target [--connector ID] [Singer options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _KINDS:
        return _error("usage: python -m connector.singer tap|target [--connector ID] [Singer options, e.g. "
                      "--about, --config FILE]", EXIT_BAD_INPUT)
    kind, rest = args[0], args[1:]
    connector_id = None
    for i, arg in enumerate(rest):
        if arg == "--connector" and i + 1 < len(rest):
            connector_id, rest = rest[i + 1], rest[:i] + rest[i + 2:]
            break
        if arg.startswith("--connector="):
            connector_id, rest = arg.split("=", 1)[1], rest[:i] + rest[i + 1:]
            break
    try:
        from connector.sdk.plugins import installed_connectors

        connector_id = installed_connectors().resolve(connector_id)
    except PluginError as exc:
        return _error(str(exc), EXIT_BAD_INPUT)
    return run(kind, connector_id, rest)
