"""Validating a configuration against a connector's schema (:func:`validate`): every problem at
once, each with its JSON path and a sentence, never the value of a secret (``writeOnly``) field.
Also a schema's defaults and secret fields.

Two validators of JSON Schema 2020-12 share the work. jsonschema-rs (compiled, imported in about
4 ms) answers first whether a configuration is valid; when it is, that is all a run needs.
jsonschema (pure Python, about 40 ms to import: a third of a command's start-up) is imported
only when it is not, or when jsonschema-rs cannot take the configuration or the schema; then its
verdict and its problems are the ones reported. So a configuration is accepted when either one
accepts it. They differ only where jsonschema-rs keeps closer to the standard: it reads
``pattern`` as an ECMA-262 regular expression, so ``\\d``, ``\\w`` and ``$`` match less than in
Python's ``re`` (jsonschema then decides) and ``\\p{L}`` is read (Python cannot: jsonschema
finds the schema broken); and it takes ``multipleOf`` in decimal, so 0.3 is a multiple of 0.1
(jsonschema's float division says not). tests/test_validation_engines.py holds them to that."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from connector.sdk.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError


def _schema_error(schema: Any) -> str | None:
    """What is wrong with ``schema`` as a JSON Schema 2020-12, or None (imports jsonschema)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        return f"{where}: {exc.message}"
    return None


def defaults(schema: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The top-level properties' defaults; with ``config``, a property marked ``"x-actions"`` (the
    actions it is for) only when the configuration's ``action`` is one of them."""
    action = (config or {}).get("action")
    return {name: prop["default"] for name, prop in schema.get("properties", {}).items()
            if "default" in prop and (config is None or action in prop.get("x-actions", (action,)))}


def secret_fields(schema: Mapping[str, Any]) -> set[str]:
    """Names of the top-level properties marked ``writeOnly`` (secrets)."""
    return {name for name, prop in schema.get("properties", {}).items() if prop.get("writeOnly")}


class _Compiled:
    """A schema's validators, each built on first use: jsonschema-rs's (:meth:`accepts`) and
    jsonschema's (:attr:`validator`); whether the schema itself was checked against the
    metaschema (done once, and only when validation went wrong)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.checked = False

    @cached_property
    def fast(self) -> Any:
        """jsonschema-rs's validator of the schema as JSON Schema 2020-12 (what jsonschema's
        Draft202012Validator reads, whatever its ``$schema``), never fetching a remote ``$ref``;
        None when it is not installed or refuses the schema."""
        try:
            from jsonschema_rs import Draft202012Validator as Fast
        except ImportError:
            return None
        try:
            return Fast(self.schema, offline=True)
        except Exception:  # a schema it cannot compile: jsonschema decides, and names what is wrong
            return None

    def accepts(self, config: Any) -> bool:
        """Whether jsonschema-rs finds ``config`` valid; False when it cannot tell (not installed,
        a schema it cannot compile, a value it cannot convert)."""
        if self.fast is None:
            return False
        try:
            return bool(self.fast.is_valid(config))
        except Exception:  # a str with a lone surrogate, say: jsonschema decides
            return False

    @cached_property
    def validator(self) -> Draft202012Validator:
        from jsonschema import Draft202012Validator
        from referencing import Registry

        # a $ref outside the schema is never fetched (jsonschema would, over HTTP, with no timeout)
        return Draft202012Validator(self.schema, registry=Registry(retrieve=_no_retrieval))

    def ensure_sound(self, name: str) -> None:
        """Raise PluginError when the schema is not a valid JSON Schema (checked once)."""
        if not self.checked:
            problem = _schema_error(self.schema)
            if problem is not None:
                raise PluginError(f"{name} is not a valid JSON Schema: {problem}")
            self.checked = True


def _no_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)


def validate(schema: Mapping[str, Any], config: Any, what: str, compiled: _Compiled | None = None,
             name: str | None = None) -> dict[str, Any]:
    """Validate ``config`` against ``schema``; raise one ConfigError listing every problem.

    A schema that is itself broken (found when validation fails or cannot run) is a
    :class:`PluginError` naming it (``name``, else "the {what} schema"), never a ConfigError.
    """
    compiled = compiled if compiled is not None else _Compiled(schema)
    name = name or f"the {what} schema"
    numbers, plain = _inspect(config)
    if numbers:  # before jsonschema: NaN passes its bounds, a huge int breaks its messages
        raise ConfigError(f"invalid {what}: " + "; ".join(numbers), numbers)
    if not (plain and compiled.accepts(config)):
        _report(schema, config, what, compiled, name)
    return {**defaults(schema, config), **_whole_numbers(schema, config)}


def _report(schema: Mapping[str, Any], config: Any, what: str, compiled: _Compiled, name: str) -> None:
    """jsonschema's verdict on ``config``: one ConfigError listing every problem, a PluginError
    when the schema is broken, nothing when it is valid."""
    try:
        errors = sorted(compiled.validator.iter_errors(config),
                        key=lambda e: (list(map(str, e.absolute_path)), e.message))
    except Exception as exc:  # an unknown type, a bad pattern, a $ref to nowhere: the connector's fault
        compiled.ensure_sound(name)
        from referencing.exceptions import PointerToNowhere, Unresolvable

        cause = getattr(exc, "_wrapped", exc)  # jsonschema wraps referencing's errors
        if isinstance(cause, PointerToNowhere):
            detail = f"its $ref '#{cause.ref}' points to nothing in the schema"
        elif isinstance(cause, Unresolvable):
            detail = f"its $ref '{cause.ref}' is not in the schema (a schema is self-contained: nothing is fetched)"
        else:
            detail = f"{type(cause).__name__}: {' '.join(str(cause).split())}"
        raise PluginError(f"{name} cannot be used to validate: {detail}") from None
    if errors:
        compiled.ensure_sound(name)  # only on this path: spurious problems from a broken schema say so
        problems = list(dict.fromkeys(f"{_path(e)}: {_sentence(e, schema)}" for e in errors))
        raise ConfigError(f"invalid {what}: " + "; ".join(problems), problems)


#: The types a configuration read from JSON is made of, exactly (not a subclass, not a tuple).
_PLAIN = frozenset((dict, list, str, int, float, bool, type(None)))


def _inspect(config: Any) -> tuple[list[str], bool]:
    """Numbers no schema bound catches: NaN and infinities (every comparison with NaN is false)
    and whole numbers too long to be a port, a count or seconds (jsonschema's own messages
    fail on them), anywhere in ``config``; and whether ``config`` is plain JSON (made of
    :data:`_PLAIN` only, string keys, no deeper than a JSON text may be), the only values
    jsonschema-rs is asked about: it takes a tuple for an array and a Decimal for a number,
    which jsonschema does not, and a connector would get them."""
    from connector.sdk.jsontext import MAX_DEPTH, MAX_DIGITS

    problems = []
    plain = True
    stack: list[tuple[Any, tuple[Any, ...]]] = [(config, ())]
    while stack:
        value, path = stack.pop()
        if plain and (type(value) not in _PLAIN or len(path) >= MAX_DEPTH
                      or (type(value) is dict and any(type(key) is not str for key in value))):
            plain = False
        where = "/".join(map(str, path)) or "(top level)"
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where}: must be a finite number, not {json.dumps(value)}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** MAX_DIGITS:
            problems.append(f"{where}: must be a whole number of at most {MAX_DIGITS} digits")
        elif len(path) < MAX_DEPTH and isinstance(value, Mapping):
            stack += [(item, (*path, key)) for key, item in value.items()]
        elif len(path) < MAX_DEPTH and isinstance(value, (list, tuple)):
            stack += [(item, (*path, i)) for i, item in enumerate(value)]
    return sorted(problems), plain


def _whole_numbers(schema: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema counts 1.0 as an integer, but paho and sockets refuse floats: hand the
    connector ``int`` wherever the schema asks for a whole number."""
    out = dict(config)
    for name, prop in schema.get("properties", {}).items():
        value = out.get(name)
        if isinstance(value, float) and value.is_integer() and _wants_integer(prop):
            out[name] = int(value)
    return out


def _wants_integer(prop: Mapping[str, Any]) -> bool:
    options = prop.get("oneOf", [])
    kinds = prop.get("type")
    return "integer" in (kinds if isinstance(kinds, list) else [kinds]) or (
        bool(options) and all(type(o.get("const")) is int for o in options))


def _path(error: ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(top level)"


def _shown(error: ValidationError, root: Mapping[str, Any]) -> str:
    """The offending value, or a mask when it sits in a secret field."""
    path = list(error.absolute_path)
    if path and path[0] in secret_fields(root):
        return "the value given"
    return json.dumps(error.instance, ensure_ascii=False) if _short(error.instance) else "the value given"


def _short(value: Any) -> bool:
    return isinstance(value, (int, float, bool, type(None))) or (isinstance(value, str) and len(value) <= 80)


def _sentence(error: ValidationError, root: Mapping[str, Any]) -> str:
    """A sentence for a person; the schema may give its own through ``errorMessage``."""
    custom = error.schema.get("errorMessage") if isinstance(error.schema, Mapping) else None
    if isinstance(custom, str):
        return custom
    if isinstance(custom, Mapping) and error.validator in custom:
        return custom[error.validator]
    kind, expected = error.validator, error.validator_value
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "a field"
        return f"'{missing}' is required"
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        hints = []
        for name in map(str, extra):  # a key of the Python API may be no str
            import difflib  # only for a misspelled field

            close = difflib.get_close_matches(name, known, n=1)
            shown = name if len(name) <= 80 else name[:80] + "..."  # a key may be megabytes long
            hints.append(f"'{shown}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return f"unknown field {', '.join(hints)}; known fields: {', '.join(known)}"
    if kind == "oneOf" and all("const" in option for option in expected):
        choices = ", ".join(_choice(o) for o in expected)
        return f"must be one of {choices}, not {_shown(error, root)}"
    if kind == "type":
        return f"must be {_a(expected)}, not {_shown(error, root)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
        return f"must be {word[kind]} {expected}, not {_shown(error, root)}"
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters long"
    if kind == "minItems":
        return "must not be an empty list" if expected == 1 else f"must hold at least {expected} items"
    if kind == "maxLength":
        return f"must be at most {expected} characters long"
    if kind == "const":
        return f"must be {json.dumps(expected)}"
    if kind == "enum":
        return f"must be one of {', '.join(json.dumps(v) for v in expected)}, not {_shown(error, root)}"
    return "is not valid" if _shown(error, root) == "the value given" else error.message


def _choice(option: Mapping[str, Any]) -> str:
    """``0 (At most once)`` for ``{"const": 0, "title": "0 - At most once"}``."""
    const = json.dumps(option["const"])
    title = option.get("title", "")
    if title.startswith(const):
        title = title[len(const):].lstrip(" -:")
    return f"{const} ({title})" if title else const


def _a(expected: Any) -> str:
    names = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
             "object": "an object", "array": "a list", "null": "null"}
    if isinstance(expected, list):
        return " or ".join(names.get(t, t) for t in expected)
    return names.get(expected, expected)
