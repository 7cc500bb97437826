"""``describe`` says a field's type and default in words a person reads ("list of [key, value]
pairs of text", "whole number or none", "default empty"), never a schema's JSON (``['string']``)."""

from __future__ import annotations

import re

import pytest

from connector.harness.describe import describe_text
from connector.harness.words import type_words, value_words
from connector.sdk.plugins import installed_connectors

#: What a schema's JSON looks like when it leaks into a line for people.
SCHEMA_JSON = re.compile(r"\[\[|\['|\b(string|integer|null|array|boolean)\b|\{\}|\[\]")


@pytest.mark.parametrize("prop, words", [
    ({"type": "string"}, "text"),
    ({"type": ["string"], "contentEncoding": "base64"}, "bytes (text, or base64 when not UTF-8)"),
    ({"type": ["integer", "null"]}, "whole number or none"),
    ({"type": "array", "items": {"type": "string"}}, "list of text"),
    ({"type": ["string", "array"], "items": {"type": "string"}}, "text or list of text"),
    ({"type": "array", "items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "string"}]}},
     "list of [key, value] pairs of text"),
    ({"type": "object", "additionalProperties": {"type": "integer", "enum": [0, 1, 2]}}, "map of text to one of 0, 1, 2"),
    ({"type": "string", "enum": ["tcp", "websockets"]}, 'one of "tcp", "websockets"'),
    ({"oneOf": [{"const": 1}, {"const": None}]}, "one of 1, none"),
    ({}, "any value"),
])
def test_types_in_words(prop: dict, words: str) -> None:
    assert type_words(prop) == words


@pytest.mark.parametrize("value, words", [(None, "none"), ("", "empty"), ([], "empty"), ({}, "empty"),
                                          (["a:1", "b:2"], '"a:1", "b:2"'), (0.5, "0.5"), (True, "true")])
def test_defaults_in_words(value: object, words: str) -> None:
    assert value_words(value) == words


@pytest.mark.parametrize("connector_id", sorted(installed_connectors().manifests))
def test_describe_lines_show_no_schema_json(connector_id: str) -> None:
    text = describe_text(installed_connectors().manifest(connector_id))
    notes = re.findall(r"^  \S.*?  \[(.*)\]$", text, re.MULTILINE)
    assert len(notes) >= 5
    leaks = [note for note in notes if SCHEMA_JSON.search(note)]
    assert not leaks, leaks


def test_describe_shows_mqtt_types_in_words() -> None:
    text = describe_text(installed_connectors().manifest("mqtt"))
    assert "[user_properties: list of [key, value] pairs of text, default empty]" in text
    assert "[filter_qos: map of text to one of 0, 1, 2, default empty]" in text
    assert "[session_expiry: whole number or none, default none]" in text
    assert "  correlation_data  [bytes (text, or base64 when not UTF-8); Send reads, Listen writes]" in text
