"""A Listen's JSON line (connector.sdk.documents.document_line): byte for byte what the standard
library's encoder writes for document_to_json's object, with or without its C module."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.harness.sinks import JsonLinesSink
from connector.sdk import documents
from connector.sdk.documents import Document, document_line, document_to_json

BYTE_PROPERTIES = ("correlation_data",)


def stdlib_line(document: Document, byte_properties: tuple[str, ...] = BYTE_PROPERTIES) -> bytes:
    """The line as json.JSONEncoder(ensure_ascii=False) writes the document's JSON form."""
    record = document_to_json(document, byte_properties)
    try:
        return (json.JSONEncoder(ensure_ascii=False).encode(record) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("utf-8")


scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                      max_leaves=8)
properties = st.builds(lambda props, data: {**props, **data}, st.dictionaries(st.text(), values, max_size=6),
                       st.fixed_dictionaries({}, optional={"correlation_data": st.binary(max_size=8) | st.text()}))


@settings(max_examples=150, deadline=None)
@given(payload=st.binary(max_size=40) | st.text(max_size=40).map(str.encode), props=properties)
def test_a_line_is_the_stdlib_encoders_bytes(payload: bytes, props: dict) -> None:
    document = Document(payload, props)
    assert document_line(document, BYTE_PROPERTIES) == stdlib_line(document)


def test_the_common_lines_are_the_contracts() -> None:
    properties = {"topic": "sensors/a/temperature", "qos": 1, "retained": True, "duplicate": False, "message_id": 7}
    assert document_line(Document(b"21", properties)) == (
        b'{"payload": "21", "encoding": "utf-8", "properties": {"topic": "sensors/a/temperature", "qos": 1, '
        b'"retained": true, "duplicate": false, "message_id": 7}}\n')
    assert document_line(Document("caf\u00e9 \"\n\x01".encode(), {"t": "\u2028"})) == (
        '{"payload": "caf\u00e9 \\"\\n\\u0001", "encoding": "utf-8", "properties": {"t": "\u2028"}}\n'.encode())
    assert document_line(Document(b"\xff\x00", {"correlation_data": b"\xfe"}), BYTE_PROPERTIES) == (
        b'{"payload": "/wA=", "encoding": "base64", "properties": {"correlation_data": "/g=="}}\n')
    # UTF-8 cannot carry a lone surrogate: that line is ASCII, with JSON's escapes
    assert document_line(Document(b"\xc3\xa9", {"k": "\ud800"})) == (
        b'{"payload": "\\u00e9", "encoding": "utf-8", "properties": {"k": "\\ud800"}}\n')


def test_without_the_c_encoder_the_bytes_are_the_same(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    document = Document("h\u00e9".encode(), {"a": [1, 2.5, None, float("nan")], "b": {"c": True}, "d": "\x7f\t"})
    fast = document_line(document)
    monkeypatch.setattr(documents, "_encode", documents._json_encoder(None))
    assert documents._encode is not None and documents.document_line(document) == fast == stdlib_line(document, ())


def test_a_property_that_is_not_json_is_refused() -> None:
    output = io.BytesIO()
    sink = JsonLinesSink(output)
    with pytest.raises(TypeError, match="not JSON serializable"):
        sink.write(Document(b"x", {"k": object()}))
    sink.flush()
    assert output.getvalue() == b""
