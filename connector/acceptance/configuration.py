"""The kit's tests of a connector's manifest, schemas, configuration errors and commands."""

from __future__ import annotations

import json

import pytest

from connector.acceptance.endpoint import Endpoint
from connector.acceptance.support import CommandLine, broken, properties
from connector.harness.runtime import Runtime
from connector.sdk.errors import ConfigError, ConnectError
from connector.sdk.manifest import Manifest

#: An action no connector has.
UNKNOWN_ACTION = "kit-no-such-action"


class ConfigurationPromises:
    connector_id: str

    def test_manifest_and_schemas_are_valid(self, kit_manifest: Manifest) -> None:
        """manifest.json is valid against the SDK's manifest schema and both schemas against JSON
        Schema 2020-12 (``Manifest.check``); the connector is installed under its manifest id."""
        kit_manifest.check()
        assert kit_manifest.id == self.connector_id

    def test_every_configuration_error_is_reported_at_once_with_its_path(
            self, kit_runtime: Runtime, kit_manifest: Manifest, endpoint: Endpoint) -> None:
        """A connection and a Send operation with every field of a wrong value, and an unknown
        action: nothing is opened, and one ConfigError names every problem by its path
        (``connection port: ...``, ``operation action: ...``), on one line."""
        connection, bad_connection = broken(kit_manifest.connection_schema, endpoint.connection)
        operation, bad_operation = broken(kit_manifest.operation_schema, endpoint.send_operation, "send")
        operation["action"] = UNKNOWN_ACTION
        with pytest.raises(ConfigError) as caught:
            kit_runtime.send(connection, operation, [b"never sent"], connector_id=self.connector_id)
        problems = caught.value.problems
        expected = [f"connection {name}:" for name in bad_connection]
        expected += [f"operation {name}:" for name in bad_operation] + ["operation action:"]
        missing = [path for path in expected if not any(p.startswith(path) for p in problems)]
        assert not missing, f"problems not reported: {missing}; reported: {problems}"
        assert "\n" not in str(caught.value)

    def test_the_command_line_reports_every_configuration_error_in_one_line(
            self, kit_manifest: Manifest, kit_cli: CommandLine, endpoint: Endpoint) -> None:
        """``run`` with such configurations exits 2 with one line ``error: ...`` naming every path
        as a key of its file (``'port' in the connection file``), and sends nothing."""
        connection, bad_connection = broken(kit_manifest.connection_schema, endpoint.connection)
        operation, bad_operation = broken(kit_manifest.operation_schema, endpoint.send_operation, "send")
        operation["action"] = UNKNOWN_ACTION
        ran = kit_cli.run("run", "--connection", kit_cli.file("connection.json", connection),
                          "--operation", kit_cli.file("operation.json", operation), input=b"never sent")
        assert ran.code == 2, ran
        lines = ran.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), ran
        expected = [f"'{n}' in the connection file" for n in bad_connection]
        expected += [f"'{n}' in the operation file" for n in [*bad_operation, "action"]]
        missing = [path for path in expected if path not in lines[0]]
        assert not missing, f"not named: {missing}\n{ran}"

    def test_describe_renders_every_field(self, kit_manifest: Manifest, kit_cli: CommandLine) -> None:
        """``describe`` shows every property of both schemas, each with its name, title and
        description."""
        ran = kit_cli.run("describe")
        assert ran.code == 0, ran
        squeezed = "".join(ran.stdout.split())
        missing = []
        for schema in (kit_manifest.connection_schema, kit_manifest.operation_schema):
            for name, prop in properties(schema).items():
                shown = f"[{name}:" in ran.stdout
                for key in ("title", "description"):
                    text = prop.get(key) if isinstance(prop, dict) else None
                    shown = shown and (not isinstance(text, str) or "".join(text.split()) in squeezed)
                if not shown:
                    missing.append(name)
        assert not missing, f"describe does not render the fields {missing}:\n{ran.stdout}"

    def test_describe_json_is_the_manifest_with_its_schemas(self, kit_manifest: Manifest,
                                                            kit_cli: CommandLine) -> None:
        """``describe --json`` prints the manifest with both schemas inlined, exactly."""
        ran = kit_cli.run("describe", "--json")
        assert ran.code == 0, ran
        assert json.loads(ran.stdout) == kit_manifest.to_json()

    def test_connectors_lists_the_connector(self, kit_manifest: Manifest, kit_cli: CommandLine) -> None:
        """``connectors --json`` lists the connector with its version and actions."""
        ran = kit_cli.run("connectors", "--json")
        assert ran.code == 0, ran
        listed = {entry["id"]: entry for entry in json.loads(ran.stdout)}
        assert self.connector_id in listed, ran
        entry = listed[self.connector_id]
        assert (entry["version"], entry["actions"]) == (kit_manifest.version, list(kit_manifest.actions))

    def test_check_succeeds_with_one_ok_line(self, kit_runtime: Runtime, kit_cli: CommandLine,
                                             endpoint: Endpoint) -> None:
        """``check`` on a reachable endpoint exits 0 and prints one line starting ``ok``; the
        Python API returns that line."""
        assert kit_runtime.check(endpoint.connection, self.connector_id).strip()
        ran = kit_cli.run("check", "--connection", kit_cli.file("connection.json", endpoint.connection))
        assert ran.code == 0, ran
        assert len(ran.stdout.splitlines()) == 1 and ran.stdout.startswith("ok"), ran

    def test_check_fails_with_exit_3_and_one_line(self, kit_runtime: Runtime, kit_cli: CommandLine,
                                                  endpoint: Endpoint) -> None:
        """``check`` on an unreachable endpoint exits 3 with one line ``error: ...`` on stderr and
        nothing on stdout; the Python API raises ConnectError."""
        with pytest.raises(ConnectError):
            kit_runtime.check(endpoint.unreachable, self.connector_id)
        ran = kit_cli.run("check", "--connection", kit_cli.file("unreachable.json", endpoint.unreachable))
        assert ran.code == 3, ran
        assert ran.stdout == "", ran
        lines = ran.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), ran
