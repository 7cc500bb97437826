"""Load a connector's manifest and schemas from its package; validate configurations.

The schemas are the single source of truth for options, defaults and help text: code asks
the manifest for them and never repeats them. Validation reports every problem at once, each
with its JSON path and a sentence, and never shows the value of a secret (``writeOnly``) field.

Two kinds of checks, for two people:

- a *configuration* (what a user gives) is validated against the connector's schemas on every
  operation, completely, with jsonschema (imported on first use, then one compiled validator
  per schema, kept with the manifest);
- the *connector itself* (manifest.json against the SDK's manifest schema, each schema against
  the JSON Schema 2020-12 metaschema) is the connector author's business: :meth:`Manifest.check`
  (also ``python -m connector.sdk.manifest PACKAGE`` and ``Connectors(pm, check=True)``), run by
  the connector's test suite. It is not repeated on every run: it cost more than the rest of
  loading. A run still fails with a :class:`PluginError` naming the file when manifest.json lacks
  what the runtime reads, when a file is not JSON, or when a schema breaks validation.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from connector.sdk.errors import ConfigError, PluginError
from connector.sdk.jsontext import JsonError, loads
from connector.sdk.validation import _Compiled, _path, _schema_error, defaults, secret_fields, validate

__all__ = ["REDACTED", "Manifest", "defaults", "redact", "secret_fields", "validate"]

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

REDACTED = "********"


def _root(package: str) -> Any:
    """Where ``package``'s manifest.json and schemas are: inside the package (an installed wheel),
    or, in a source checkout or an editable install of a repository that keeps them at its top
    level beside pyproject.toml, there. A folder's path (a str), else an importlib.resources
    Traversable (a package in a zip file)."""
    folder = _folder(package)
    if folder is None:
        from importlib import resources

        return resources.files(package)
    if package == __package__ or os.path.isfile(os.path.join(folder, "manifest.json")):  # the SDK's own too
        return folder
    parent = os.path.realpath(folder)
    while os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
        if os.path.isfile(os.path.join(parent, "pyproject.toml")):
            return parent if os.path.isfile(os.path.join(parent, "manifest.json")) else folder
    return folder


def _folder(package: str) -> str | None:
    """The one folder of ``package`` (imported if it is not), or None (a namespace package, a zip file)."""
    module = sys.modules.get(package)
    if module is None:
        from importlib import import_module

        module = import_module(package)
    paths = list(getattr(module, "__path__", None) or ())
    return paths[0] if len(paths) == 1 and os.path.isdir(paths[0]) else None


def _read_text(package: str, path: str) -> str:
    root = _root(package)
    if not isinstance(root, str):
        return root.joinpath(path).read_text(encoding="utf-8")
    with open(os.path.join(root, *path.split("/")), encoding="utf-8") as f:
        return f.read()


def _read_json(package: str, path: str) -> Any:
    try:
        text = _read_text(package, path)
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise PluginError(f"connector package {package!r} has no {path}: {exc}") from None
    try:
        return loads(text)
    except JsonError as exc:
        raise PluginError(f"{package}/{path} {exc}") from None


def _check(validator: Draft202012Validator, instance: Any, what: str) -> None:
    problems = [f"{_path(e)}: {e.message}" for e in validator.iter_errors(instance)]
    if problems:
        raise PluginError(f"{what} is not valid: " + "; ".join(problems))


#: What :meth:`Manifest.load` reads from manifest.json, and the JSON type each must have. The
#: whole manifest schema is checked by :meth:`Manifest.check`; this is the part a run relies on.
_FIELDS = {"id": str, "name": str, "version": str, "description": str, "connection_schema": str,
           "operation_schema": str, "actions": dict, "document_properties": dict}
_JSON_TYPE = {str: "a string", dict: "an object"}


def _shape(raw: Any, what: str) -> None:
    """The fields a run reads are there, each of its type; else a PluginError naming them."""
    if not isinstance(raw, dict):
        raise PluginError(f"{what} is not valid: (top level): it must be a JSON object")
    problems = [f"(top level): {name!r} is a required property" for name in _FIELDS if name not in raw]
    problems += [f"{name}: must be {_JSON_TYPE[kind]}" for name, kind in _FIELDS.items()
                 if name in raw and not isinstance(raw[name], kind)]
    if problems:
        raise PluginError(f"{what} is not valid: " + "; ".join(problems))


@dataclass(frozen=True)
class Manifest:
    """A connector's manifest with its two schemas loaded."""

    id: str
    name: str
    version: str
    description: str
    actions: dict[str, Any]
    document_properties: dict[str, Any]
    connection_schema: dict[str, Any]
    operation_schema: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    #: The package the manifest was loaded from ("" when built in code): named in errors.
    package: str = field(default="", repr=False, compare=False)

    @classmethod
    def load(cls, package: str) -> Manifest:
        """Read ``manifest.json`` and the schemas it names from ``package`` (works from a wheel).

        Checks what a run relies on (the fields it reads, JSON objects); the full checks of the
        files against their metaschemas are :meth:`check`'s, for the connector's tests.
        """
        raw = _read_json(package, "manifest.json")
        _shape(raw, f"{package}/manifest.json")
        schemas = {}
        for key in ("connection_schema", "operation_schema"):
            schema = _read_json(package, raw[key])
            if not isinstance(schema, (dict, bool)):
                raise PluginError(f"{package}/{raw[key]} is not a valid JSON Schema: it must be a JSON object")
            schemas[key] = schema
        return cls(
            id=raw["id"],
            name=raw["name"],
            version=raw["version"],
            description=raw["description"],
            actions=raw["actions"],
            document_properties=raw["document_properties"],
            connection_schema=schemas["connection_schema"],
            operation_schema=schemas["operation_schema"],
            raw=raw,
            package=package,
        )

    def check(self) -> Manifest:
        """The connector author's check: manifest.json against the SDK's manifest schema and
        both schemas against the JSON Schema 2020-12 metaschema, every problem in one
        :class:`PluginError` naming the file. Returns the manifest itself.

        A connector's test suite calls it (``Manifest.load("my.package").check()``), as does
        ``python -m connector.sdk.manifest PACKAGE``; runs skip it (see the module's docstring).
        """
        from jsonschema import Draft202012Validator

        where = self.package or self.id
        _check(Draft202012Validator(_manifest_schema()), self.raw, f"{where}/manifest.json")
        for key in ("connection_schema", "operation_schema"):
            problem = _schema_error(getattr(self, key))
            if problem is not None:
                raise PluginError(f"{where}/{self.raw.get(key, key)} is not a valid JSON Schema: {problem}")
        return self

    def to_json(self) -> dict[str, Any]:
        """The manifest with both schemas inlined (what ``describe --json`` prints)."""
        return {**self.raw, "connection_schema": self.connection_schema, "operation_schema": self.operation_schema}

    def validate_connection(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a connection configuration; return it with the schema's defaults filled in."""
        return validate(self.connection_schema, config, "connection", self._validators["connection_schema"],
                        self._named("connection_schema"))

    def validate_operation(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Validate an operation configuration; return it with the schema's defaults filled in.

        Its ``action`` must be one of the manifest's ``actions``: a missing or unknown one is a
        problem naming the choices. A schema need not declare ``action`` (then it is validated
        without it, and kept)."""
        action = self._action_problem(config)
        schema = self.operation_schema
        declared = isinstance(schema, Mapping) and "action" in schema.get("properties", {})
        given = config if declared or not isinstance(config, Mapping) else {
            k: v for k, v in config.items() if k != "action"}
        try:
            operation = validate(self.operation_schema, given, "operation", self._validators["operation_schema"],
                                 self._named("operation_schema"))
        except ConfigError as exc:
            if action is None or any(p.startswith("action:") or "'action'" in p for p in exc.problems):
                raise  # the schema said it already, in its own words
            problems = [action, *exc.problems]
            raise ConfigError("invalid operation: " + "; ".join(problems), problems) from None
        if action is not None:
            raise ConfigError(f"invalid operation: {action}", [action])
        if given is not config:  # the defaults of the fields marked for this action, and the action
            operation = {**defaults(schema, config), **operation, "action": config["action"]}
        return operation

    def _action_problem(self, config: Any) -> str | None:
        """Why ``config``'s action is not one the manifest declares, or None."""
        if not isinstance(config, Mapping):
            return None  # the schema reports it
        choices = ", ".join(f"'{name}'" for name in sorted(self.actions))
        if "action" not in config:
            return f"action: missing; give one of {choices}"
        action = config["action"]
        if isinstance(action, str) and action in self.actions:
            return None
        shown = f"'{action}'" if isinstance(action, str) and len(action) <= 80 else "the value given"
        return f"action: {shown} is not an action of this connector; give one of {choices}"

    @cached_property
    def byte_properties(self) -> frozenset[str]:
        """The document properties that carry bytes: those whose schema in ``document_properties``
        says ``"contentEncoding": "base64"``. In the Python API their values are bytes; in a JSON
        line, text when the bytes are UTF-8, else base64 (:func:`~connector.sdk.documents.document_to_json`)."""
        return frozenset(name for name, schema in self.document_properties.items()
                         if isinstance(schema, Mapping) and schema.get("contentEncoding") == "base64")

    def _named(self, key: str) -> str:
        return f"{self.package or self.id}/{self.raw.get(key, key)}"

    @cached_property
    def _validators(self) -> dict[str, _Compiled]:
        """One compiled validator per schema, built on first use and kept (not a dataclass field)."""
        return {"connection_schema": _Compiled(self.connection_schema),
                "operation_schema": _Compiled(self.operation_schema)}


_MANIFEST_SCHEMA: dict[str, Any] | None = None


def _manifest_schema() -> dict[str, Any]:
    global _MANIFEST_SCHEMA
    if _MANIFEST_SCHEMA is None:
        _MANIFEST_SCHEMA = _read_json(__package__, "manifest.schema.json")
    return _MANIFEST_SCHEMA


def redact(schema: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with every non-empty secret replaced, safe to log or show."""
    hidden = secret_fields(schema)
    return {k: (REDACTED if k in hidden and v else v) for k, v in config.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m connector.sdk.manifest PACKAGE...``: a connector author's full check."""
    packages = sys.argv[1:] if argv is None else argv
    if not packages or any(p.startswith("-") for p in packages):
        print("usage: python -m connector.sdk.manifest PACKAGE [PACKAGE...]\n"
              "checks each connector package's manifest.json and schemas against their metaschemas",
              file=sys.stderr)
        return 2
    failed = 0
    for package in packages:
        try:
            manifest = Manifest.load(package).check()
        except PluginError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
        else:
            print(f"ok: {package}: connector {manifest.id!r} {manifest.version}, manifest and schemas valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
