"""Command-line flags generated from a connector's JSON Schemas: one flag per property.

The schema is the single source of truth: the flag's name (the property's, underscores as dashes,
or its ``x-flag``), type, choices, metavar (``x-metavar``), whether it is required, and its help
text (the property's ``description``, exactly) all come from it, so a new field needs no code
here. The way back, from the parsed arguments to a configuration, is
:func:`connector.harness.flagconfig.config_from_args`.

Annotations read on a property (all optional):

- ``x-flag``: the flag's name when it differs from the property's (``"--message-expiry"``). On a
  boolean whose default is true the flag sets it false (``clean_session`` / ``--persistent``);
  without ``x-flag`` that flag is ``--no-FIELD``.
- ``x-metavar``: the word for the value in the help (``"HOST:PORT"``), or one per action.
- ``x-actions``: the operation's actions the property is for (all when absent).
- ``x-env``: an environment variable read when the flag is absent (a secret).
- ``x-file-flag``: a second flag naming a file whose first line is the value (``--password-file``);
  of a list, each line of the file is one item (``--topic-file``: thousands of filters, which as
  flags would cost argparse seconds, as its parsing grows with the square of the flags).
- ``x-flag-needs``: ``{field: message}``: the flag is a usage error (that message) when ``field``
  is empty in the resulting configuration.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.harness.flagtypes import argparse_options, choices_of, types_of
from connector.sdk.errors import PluginError

#: Flags the harness's commands take themselves: no schema property may take one of them.
HARNESS_FLAGS = frozenset({"--connection", "--connector", "--verbose", "-v", "--results", "--outbox", "--lines",
                           "--file", "--message", "--count", "--timeout", "--json", "--help", "-h", "--version",
                           "--operation", "--format", "--output", "--payload-encoding", "--repeat",
                           "--interval", "--log-format", "--health-port", "--health-host", "--health-threshold",
                           "--metrics"})
#: Attribute names the harness reads from the parsed arguments (its flags' and the command's).
_HARNESS_DESTS = frozenset({f.lstrip("-").replace("-", "_") for f in HARNESS_FLAGS} | {"command", "inputs"})


class Verbatim(str):
    """A help text shown as it is (no ``%`` formatting), with ``suffix`` after it; equal to the
    text itself, so that an action's ``help`` is the schema's description."""

    suffix: str = ""


@dataclass(frozen=True)
class Flag:
    """One generated flag: the property ``field`` of a schema, given as ``option``."""

    field: str
    option: str
    kind: str  # text, integer, number, choice, true, false, list, text-or-list, pairs, map, json
    title: str = ""
    env: str | None = None
    file_option: str | None = None
    needs: Mapping[str, str] = field(default_factory=dict)
    secret: bool = False
    prop: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments: the property's own name."""
        return self.field

    @property
    def file_dest(self) -> str | None:
        return self.file_option[2:].replace("-", "_") if self.file_option else None

    @property
    def file_lines(self) -> bool:
        """Whether the file flag's file gives a list, one item a line (else its first line is the value)."""
        return self.kind in ("list", "text-or-list")


def _kind(prop: Mapping[str, Any]) -> str:
    kinds = types_of(prop)
    items = prop.get("items") if isinstance(prop.get("items"), Mapping) else {}
    if choices_of(prop):
        return "choice"
    if kinds == ["boolean"]:
        return "false" if prop.get("default") is True else "true"
    if kinds == ["array"] and types_of(items) == ["array"] and len(items.get("prefixItems", ())) == 2:
        return "pairs"
    if kinds == ["array"] and types_of(items) == ["string"]:
        return "list"
    if sorted(kinds) == ["array", "string"] and types_of(items) == ["string"]:
        return "text-or-list"
    if kinds == ["object"] and isinstance(prop.get("additionalProperties"), Mapping):
        return "map"
    if len(kinds) == 1 and kinds[0] in ("string", "integer", "number"):
        return {"string": "text"}.get(kinds[0], kinds[0])
    return "json"


_METAVARS = {"text": "TEXT", "integer": "N", "number": "NUMBER", "list": "TEXT", "text-or-list": "TEXT",
             "pairs": "KEY=VALUE", "map": "KEY=VALUE", "json": "JSON"}


def for_action(schema: Mapping[str, Any], name: str, action: str | None) -> Mapping[str, Any] | None:
    """The property ``name`` as the operation schema has it for ``action``: None when it is not
    for that action (``x-actions``, or an ``if action const / then`` that forbids it (``not``) or
    leaves it one value (``const``)); else the property with the type the ``then`` narrows it to."""
    prop = schema["properties"][name]
    if action is None:
        return prop
    if action not in prop.get("x-actions", (action,)):
        return None
    for rule in schema.get("allOf", ()):
        condition = rule.get("if", {}).get("properties", {}).get("action", {})
        narrowed = rule.get("then", {}).get("properties", {}).get(name)
        if condition.get("const") != action or not isinstance(narrowed, Mapping):
            continue
        if "not" in narrowed or "const" in narrowed:
            return None
        if "type" in narrowed:
            prop = {**prop, "type": narrowed["type"]}
    return prop


def schema_flags(schema: Mapping[str, Any], action: str | None = None) -> list[Flag]:
    """The flags of ``schema`` (of an operation for ``action``, whose ``action`` property is the
    command itself), in the schema's ``x-order``."""
    props = schema.get("properties", {})
    order = [name for name in schema.get("x-order", ()) if name in props]
    flags = []
    for name in order + [name for name in props if name not in order]:
        prop = for_action(schema, name, action) if not (action and name == "action") else None
        if prop is None:
            continue
        kind = _kind(prop)
        option = prop.get("x-flag") or ("--no-" if kind == "false" else "--") + name.replace("_", "-")
        flags.append(Flag(field=name, option=option, kind=kind, title=prop.get("title", name), env=prop.get("x-env"),
                          file_option=prop.get("x-file-flag"), needs=prop.get("x-flag-needs", {}),
                          secret=bool(prop.get("writeOnly")), prop=prop))
    return flags


def metavar_of(flag: Flag, action: str | None) -> str | None:
    """The word for the flag's value in the help (its ``x-metavar``, for ``action`` when it has one per action)."""
    given = flag.prop.get("x-metavar")
    if isinstance(given, Mapping):
        given = given.get(action or "")
    return given or _METAVARS.get(flag.kind)


def _help(flag: Flag) -> Verbatim:
    """The property's description, with what ``--help`` adds after it: the schema's default, the
    environment variable."""
    text = Verbatim(flag.prop.get("description", ""))
    default = flag.prop.get("default")
    notes = [f"default: {default}"] if default not in (None, "", [], {}) and flag.kind not in ("true", "false") else []
    if flag.kind == "false":
        notes.append(f"this flag turns {flag.title} off")
    if flag.env:
        notes.append(f"or the environment variable {flag.env}")
    text.suffix = f" ({'; '.join(notes)})" if notes else ""
    return text


class _VerbatimHelp(argparse.HelpFormatter):
    """Shows a :class:`Verbatim` help text as it is, with its suffix (no ``%`` formatting)."""

    def _expand_help(self, action: argparse.Action) -> str:
        if isinstance(action.help, Verbatim):
            return action.help + action.help.suffix
        return super()._expand_help(action)


def _check_name(flag: Flag, what: str, taken: dict[str, str]) -> None:
    """A PluginError naming the field when its flag is not a flag or is taken; else taken."""
    for option, dest in ((flag.option, flag.dest), (flag.file_option, flag.file_dest)):
        if option is None:
            continue
        if not (isinstance(option, str) and option.startswith("--") and len(option) > 2 and option.isprintable()
                and " " not in option and "=" not in option):
            raise PluginError(f"the {what} field {flag.field!r} has the flag {option!r}: a flag is '--' and a name")
        if option in HARNESS_FLAGS:
            raise PluginError(f"the {what} field {flag.field!r} would take the flag {option}, which the command "
                              "line uses itself: give the field another one with \"x-flag\"")
        if dest in _HARNESS_DESTS:
            raise PluginError(f"the {what} field {flag.field!r} is named like the command line's own {dest!r}: "
                              "a connector's field cannot be called so")
        clash = taken.get(option) or (dest if dest in taken.values() else None)
        if clash is not None:
            raise PluginError(f"the {what} field {flag.field!r} would take the flag {option}, which {clash!r} "
                              "has already: give the field another one with \"x-flag\"")
        taken[option] = dest


def add_schema_flags(parser: argparse.ArgumentParser, schema: Mapping[str, Any], action: str | None = None,
                     title: str | None = None, taken: dict[str, str] | None = None) -> list[Flag]:
    """Add one flag per property of ``schema`` to ``parser`` (in an argument group when ``title``
    is given); an operation schema's for ``action`` only. ``taken`` maps the flags added so far
    (for instance by the connection schema's call) to their attribute names and is updated. A flag that
    collides with the harness's or another field's is a :class:`PluginError` naming the field."""
    what = "operation" if action else "connection"
    taken = {} if taken is None else taken
    flags = schema_flags(schema, action)
    for flag in flags:
        _check_name(flag, what, taken)
    if not issubclass(parser.formatter_class, _VerbatimHelp):
        parser.formatter_class = type(f"Verbatim{parser.formatter_class.__name__}",
                                      (_VerbatimHelp, parser.formatter_class), {})
    group = parser.add_argument_group(title) if title else parser
    required = set(schema.get("required", ())) if action else set()
    for flag in flags:
        try:
            # a required field with a file flag needs one of the two
            both = group.add_mutually_exclusive_group(required=True) if flag.file_option and flag.field in required \
                else None
            (both or group).add_argument(
                flag.option, dest=flag.dest, help=_help(flag), required=flag.field in required and both is None,
                **({"metavar": metavar_of(flag, action)} if flag.kind not in ("true", "false") else {}),
                **argparse_options(flag.prop, flag.kind))
            if flag.file_option:
                (both or group).add_argument(flag.file_option, dest=flag.file_dest, metavar="FILE",
                                   help=f"read the {flag.title.lower()} from FILE, one a line" if flag.file_lines
                                   else f"read the {flag.title.lower()} from the first line of FILE")
        except argparse.ArgumentError as exc:
            raise PluginError(f"the {what} field {flag.field!r} cannot have the flag {flag.option}: {exc}") from None
    return flags


def add_connector_flags(parser: argparse.ArgumentParser, connection_schema: Mapping[str, Any],
                        operation_schema: Mapping[str, Any] | None = None,
                        action: str | None = None) -> tuple[list[Flag], list[Flag]]:
    """A command's flags: the connection schema's, and with ``action`` the operation schema's
    for it; returns both lists, for :func:`connector.harness.flagconfig.config_from_args`."""
    taken: dict[str, str] = {}
    connection = add_schema_flags(parser, connection_schema, None, "connection (flags override --connection FILE)",
                                  taken)
    operation = add_schema_flags(parser, operation_schema, action, "operation", taken) if action else []
    return connection, operation
