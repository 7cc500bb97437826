"""A connector's schemas as the form library renders them (:func:`form_schemas`).

The connection and operation schemas (JSON Schema 2020-12) are the one source of truth; the form
library (json-editor 2.x, in the browser) reads JSON Schema in an older dialect and takes its
hints (field order, choice titles, which fields show for which action) from ``options``. This
module rewrites a schema into that dialect, for any connector, keeping every rule:

- local ``$ref`` are inlined; ``prefixItems`` become tuple ``items``; a numeric
  ``exclusiveMinimum`` becomes ``minimum`` with ``exclusiveMinimum: true``;
- ``x-order`` gives each property its ``propertyOrder``; ``examples`` a placeholder;
- a ``oneOf`` of ``const`` choices is an ``enum`` with ``enum_titles`` (the QoS promises); a field
  of several types is a ``oneOf`` of them, each named;
- ``errorMessage`` (the SDK's sentences) becomes the library's per-field ``error_messages``;
- ``writeOnly`` fields are password inputs with no default (a secret never goes to the browser);
- a nullable type (``["integer", "null"]``) is its other type; left empty, the field is left out,
  so that the schema's default applies (a nullable choice: see :func:`_optional_choice`);
- the conditions at the top (``allOf`` of ``if``/``then`` on the action) and the required fields
  stay, as ``x-conditions`` and ``x-required``, for the page's validator (so that their errors
  show at the fields they are about); a field a condition forbids (``not: {}``) or fixes
  (``const``), and a field marked ``x-actions``, shows only for the actions that take it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

#: The form library's error keys for a JSON Schema keyword, where they differ from ``error_KEYWORD``.
_ERROR_KEYS = {"minLength": ("error_minLength", "error_notempty"),
               "minimum": ("error_minimum_incl", "error_minimum_excl"),
               "maximum": ("error_maximum_incl", "error_maximum_excl"),
               "type": ("error_type", "error_type_union")}
#: How deep a ``$ref`` may lead before the schema counts as recursive (not renderable as a form).
_MAX_REF_DEPTH = 32


def form_schemas(manifest: Any) -> dict[str, Any]:
    """The connection and operation forms of a connector (its :class:`~connector.sdk.manifest.Manifest`)."""
    return {"connection": form_schema(manifest.connection_schema),
            "operation": operation_form(manifest.operation_schema, manifest.actions)}


def operation_form(schema: Mapping[str, Any], actions: Mapping[str, Any]) -> dict[str, Any]:
    """The operation form: the schema's, with an Action choice from the manifest's actions when
    the schema declares none (the SDK adds the action to such an operation itself)."""
    form = form_schema(schema)
    properties = form.setdefault("properties", {})
    if "action" not in properties:
        names = list(actions)
        properties["action"] = {"title": "Action", "type": "string", "enum": names, "propertyOrder": 0,
                                "options": {"enum_titles": [actions[n].get("title", n) for n in names]}}
        form["x-required"] = ["action", *form.get("x-required", [])]
    _show_for_actions(form)
    return form


def form_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` in the form library's dialect (see the module's docstring)."""
    root = copy.deepcopy(dict(schema))
    root.pop("definitions", None)  # inlined wherever a $ref names them
    root.pop("$defs", None)
    conditions = [c for c in root.pop("allOf", []) if isinstance(c, Mapping) and "if" in c]
    rest = [c for c in schema.get("allOf", []) if not (isinstance(c, Mapping) and "if" in c)]
    form = _adapt(root, schema, 0)
    if rest:
        form["allOf"] = [_adapt(c, schema, 0) for c in rest]
    if conditions:
        form["x-conditions"] = [_adapt(c, schema, 0) for c in conditions]
    form.pop("$schema", None)
    form.pop("$id", None)
    form["options"] = {**form.get("options", {}), "remove_empty_properties": True, "disable_collapse": True}
    if "required" in form:  # checked by the page, so that the error shows at the field, not above the form
        form["x-required"] = form.pop("required")
    order = schema.get("x-order", [])
    for index, name in enumerate(order):
        if name in form.get("properties", {}):
            form["properties"][name]["propertyOrder"] = index + 1
    for name, prop in form.get("properties", {}).items():
        prop.setdefault("propertyOrder", len(order) + 1)
        if prop.get("writeOnly"):
            prop.pop("default", None)
            prop["format"] = "password"
            prop.setdefault("options", {})["inputAttributes"] = {"autocomplete": "off"}
    return form


def _adapt(node: Any, root: Mapping[str, Any], depth: int) -> Any:
    """One schema node (and all below it) in the form library's dialect."""
    if isinstance(node, list):
        return [_adapt(item, root, depth) for item in node]
    if not isinstance(node, Mapping):
        return node
    node = dict(node)
    if "$ref" in node:
        node = {**_resolve(node.pop("$ref"), root, depth), **node}
        depth += 1
    out = {key: _adapt(value, root, depth) for key, value in node.items() if key != "errorMessage"}
    options = dict(out.pop("options", {}))
    _choices(out, options)
    _nullable(out, options)
    _bounds(out)
    if out.get("type") == "boolean" and "enum" not in out:
        out["format"] = "checkbox"
    if "prefixItems" in out:
        extra = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if extra is not None:
            out["additionalItems"] = extra
    examples = out.get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], str):
        options.setdefault("inputAttributes", {})["placeholder"] = examples[0]
    messages = _error_messages(node.get("errorMessage"))
    if messages:
        options["error_messages"] = {"en": messages}
    if options:
        out["options"] = options
    _kinds(out)
    return out


def _resolve(ref: str, root: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth >= _MAX_REF_DEPTH:
        raise ValueError(f"the schema's $ref {ref!r} is recursive: it cannot be shown as a form")
    if not ref.startswith("#/"):
        raise ValueError(f"the schema's $ref {ref!r} is not local (#/$defs/...): it cannot be shown as a form")
    target: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or part not in target:
            raise ValueError(f"the schema's $ref {ref!r} leads nowhere")
        target = target[part]
    return dict(target)


def _choices(out: dict[str, Any], options: dict[str, Any]) -> None:
    """A ``oneOf`` of constants is a choice: ``enum`` with titles."""
    one_of = out.get("oneOf")
    if not (isinstance(one_of, list) and one_of and all(isinstance(o, Mapping) and "const" in o for o in one_of)):
        return
    del out["oneOf"]
    out["enum"] = [o["const"] for o in one_of]
    options["enum_titles"] = [o.get("title", str(o["const"])) for o in one_of]
    if "type" not in out:
        kinds = {_json_type(o["const"]) for o in one_of}
        out["type"] = kinds.pop() if len(kinds) == 1 else sorted(kinds)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", type(None): "null"}.get(type(value), "string")


def _nullable(out: dict[str, Any], options: dict[str, Any]) -> None:
    """``["T", "null"]`` is T; empty, the field is left out (the schema's default, null, applies)."""
    kinds = out.get("type")
    if isinstance(kinds, list) and "null" in kinds and len(kinds) == 2:
        out["type"] = next(k for k in kinds if k != "null")
        if out.get("default", 0) is None:
            del out["default"]
        if isinstance(out.get("enum"), list) and None in out["enum"]:
            _optional_choice(out, options)


def _optional_choice(out: dict[str, Any], options: dict[str, Any]) -> None:
    """A choice that may be left out: "(not set)" first (the form's default, left out when sent),
    then each choice as its JSON text; ``x-choices`` maps the texts back (the page does so before
    sending), as the form library's choices of a number cannot hold an empty one."""
    titles = options.get("enum_titles") or [str(v) for v in out["enum"]]
    chosen = [(json.dumps(v), t) for v, t in zip(out["enum"], titles) if v is not None]
    out["x-choices"] = {text: json.loads(text) for text, _ in chosen}
    out["type"] = "string"
    out["enum"] = ["", *(text for text, _ in chosen)]
    options["enum_titles"] = ["(not set)", *(t for _, t in chosen)]


#: What a person calls each JSON type (the SDK's words): a field of several types offers them so.
_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "object": "an object", "array": "a list"}


def _kinds(out: dict[str, Any]) -> None:
    """A field of several types (``["string", "array"]``) is a choice between them, each named."""
    kinds = out.get("type")
    if not (isinstance(kinds, list) and len(kinds) > 1 and "null" not in kinds and "enum" not in out):
        return
    del out["type"]
    shared = {k: out.pop(k) for k in list(out) if k not in ("title", "description", "propertyOrder", "x-actions")}
    out["oneOf"] = [{**shared, "type": kind, "title": _TYPE_WORDS.get(kind, kind)} for kind in kinds]


def _bounds(out: dict[str, Any]) -> None:
    """2020-12's numeric exclusive bounds in the library's (draft 4) form."""
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        value = out.get(exclusive)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[bound], out[exclusive] = value, True


def _error_messages(custom: Any) -> dict[str, str]:
    """The schema's own sentences (``errorMessage``) under the library's error keys."""
    if isinstance(custom, str):
        return {key: custom for keys in _ERROR_KEYS.values() for key in keys} | {
            f"error_{k}": custom for k in ("pattern", "maxLength", "not", "const", "enum", "minItems", "maxItems")}
    if not isinstance(custom, Mapping):
        return {}
    messages = {}
    for keyword, sentence in custom.items():
        for key in _ERROR_KEYS.get(keyword, (f"error_{keyword}",)):
            messages[key] = sentence
    return messages


def _show_for_actions(form: dict[str, Any]) -> None:
    """Each field shows only for the actions that take it: those its ``x-actions`` names, less
    those whose condition forbids it (``not: {}``) or fixes it (``const``)."""
    action = form["properties"]["action"]
    actions = list(action.get("enum", []))
    for name, prop in form["properties"].items():
        if name == "action":
            continue
        allowed = [a for a in actions if a in prop.get("x-actions", actions)]
        allowed = [a for a in allowed if not _ruled_out(form.get("x-conditions", []), a, name)]
        if allowed != actions:
            prop.setdefault("options", {})["dependencies"] = {"action": allowed}


def _ruled_out(conditions: list[Any], action: Any, name: str) -> bool:
    for condition in conditions:
        when = condition.get("if", {}).get("properties", {}).get("action", {})
        if when.get("const", object()) != action:
            continue
        rule = condition.get("then", {}).get("properties", {}).get(name)
        if isinstance(rule, Mapping) and (rule.get("not") == {} or "const" in rule):
            return True
    return False
