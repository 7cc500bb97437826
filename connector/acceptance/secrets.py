"""The kit's tests that a secret (a ``writeOnly`` field) never shows, whatever happens."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.acceptance.endpoint import Endpoint
from connector.acceptance.support import CommandLine, broken, secret_values, unique
from connector.harness.runtime import Runtime
from connector.sdk.manifest import Manifest


def _chain(exc: BaseException) -> Iterator[str]:
    """The messages of an exception and of every exception it was raised from or during."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield f"{type(current).__name__}: {current} {current.args!r}"
        current = current.__cause__ or current.__context__


def _attempt(texts: list[str], work: Callable[[], Any]) -> None:
    """Run ``work``; keep what it returned and the messages of what it raised."""
    try:
        texts.append(repr(work()))
    except Exception as exc:
        texts.extend(_chain(exc))


class SecretPromises:
    connector_id: str

    @pytest.fixture
    def secrets(self, kit_manifest: Manifest) -> dict[str, str]:
        values = secret_values(kit_manifest)
        if not values:
            pytest.skip("the connection schema declares no secret (writeOnly) field")
        return values

    def _leaks(self, secrets: dict[str, str], texts: list[str]) -> list[str]:
        return [f"{name} in {text[:300]!r}" for text in texts for name, value in secrets.items()
                if value.split("-")[-1] in text]

    def test_secrets_never_show_in_the_python_api(self, kit_runtime: Runtime, kit_manifest: Manifest,
                                                  endpoint: Endpoint, secrets: dict[str, str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
        """With every secret field set: a check, a Send and a Listen on the endpoint, a check that
        cannot connect and a configuration error show no secret in any result, any exception
        message (nor the exceptions they were raised from) or any log record, at DEBUG level."""
        conn, unreachable = {**endpoint.connection, **secrets}, {**endpoint.unreachable, **secrets}
        bad, _ = broken(kit_manifest.connection_schema, endpoint.connection)
        bad.update(secrets)
        texts: list[str] = []
        runtime, cid = kit_runtime, self.connector_id
        with caplog.at_level(logging.DEBUG):
            _attempt(texts, lambda: runtime.check(conn, cid))
            _attempt(texts, lambda: runtime.check(unreachable, cid))
            _attempt(texts, lambda: runtime.check(bad, cid))
            _attempt(texts, lambda: [(r.status, r.error, r.note) for r in runtime.send(
                conn, endpoint.send_operation, [unique("kit secret")], connector_id=cid)])
            _attempt(texts, lambda: list(runtime.send(unreachable, endpoint.send_operation, [b"x"], connector_id=cid)))
            _attempt(texts, lambda: runtime.listen(conn, endpoint.listen_operation, lambda d: None, timeout=1,
                                                   connector_id=cid))
        for record in caplog.records:
            texts.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                texts.extend(_chain(record.exc_info[1]))
        assert not self._leaks(secrets, texts)

    def test_secrets_never_show_on_the_command_line(self, kit_manifest: Manifest, kit_cli: CommandLine,
                                                    endpoint: Endpoint, secrets: dict[str, str],
                                                    tmp_path: Path) -> None:
        """With every secret field set in the connection file and ``--verbose``: ``check`` (also
        when it cannot connect or the configuration is wrong), ``run`` of a Send (with its results
        file) and of a Listen write no secret to stdout, stderr or the results file."""
        conn = kit_cli.file("secret.json", {**endpoint.connection, **secrets})
        unreachable = kit_cli.file("unreachable.json", {**endpoint.unreachable, **secrets})
        bad, _ = broken(kit_manifest.connection_schema, endpoint.connection)
        wrong = kit_cli.file("wrong.json", {**bad, **secrets})
        send = kit_cli.file("send.json", endpoint.send_operation)
        listen = kit_cli.file("listen.json", endpoint.listen_operation)
        results = tmp_path / "results.jsonl"
        runs = [kit_cli.run("check", "--connection", path, "--verbose") for path in (conn, unreachable, wrong)]
        runs.append(kit_cli.run("run", "--connection", conn, "--operation", send, "--results", str(results),
                                "--verbose", input=unique("kit secret")))
        runs.append(kit_cli.run("run", "--connection", unreachable, "--operation", send, "--verbose", input=b"x"))
        runs.append(kit_cli.run("run", "--connection", conn, "--operation", listen, "--timeout", "1", "--verbose"))
        texts = [str(ran) for ran in runs]
        if results.exists():
            texts.append(results.read_text(encoding="utf-8", errors="replace"))
        assert not self._leaks(secrets, texts)
