"""MQTT 5 message properties as document properties, both ways (names in the manifest).

Only MQTT 5 connections build or read them: an MQTT 3.1.1 message carries none, and the hot paths
of MQTT 3.1.1 never come here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connector.mqtt.topics import TextError, TopicError, check_binary, check_string, check_topic_name

#: The document properties (and Send operation fields) that are MQTT 5 PUBLISH properties.
MQTT5_FIELDS = ("user_properties", "content_type", "payload_format_indicator", "message_expiry_interval",
                "response_topic", "correlation_data")

#: The user property a Send with ``stamp_id`` adds, and a Listen with a ``dedupe_window`` reads.
ID_PROPERTY = "msg-id"

#: Operation options that only MQTT 5 can carry, with the value that means "not used".
MQTT5_OPTIONS = {"no_local": False, "retain_as_published": False, "retain_handling": 0, "dedupe_window": 0,
                 "stamp_id": False}


def mqtt5_problems(operation: Mapping[str, Any]) -> list[str]:
    """What of an operation needs MQTT 5 (for a connection that speaks 3.1.1)."""
    used = [name for name in MQTT5_FIELDS if operation.get(name) not in (None, [])]
    used += [name for name, unused in MQTT5_OPTIONS.items() if operation.get(name, unused) != unused]
    return [f"operation {name}: needs MQTT 5: connect with protocol 5 (--protocol 5)" for name in used]


def message_uid(properties: Properties | None) -> str | None:
    """The ``msg-id`` user property of a received message, if it has one."""
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key == ID_PROPERTY:
            return value
    return None


#: Document property -> paho's attribute of a PUBLISH's Properties.
_PAHO = {"content_type": "ContentType", "payload_format_indicator": "PayloadFormatIndicator",
         "message_expiry_interval": "MessageExpiryInterval", "response_topic": "ResponseTopic",
         "correlation_data": "CorrelationData"}


class PropertyError(ValueError):
    """A document's MQTT 5 property cannot be sent as it is (that document's APPLICATION_ERROR)."""


def operation_defaults(operation: Mapping[str, Any]) -> dict[str, Any]:
    """The Send operation's MQTT 5 properties that are set: the defaults of every message."""
    return {name: operation[name] for name in MQTT5_FIELDS if operation.get(name) not in (None, [])}


def publish_properties(defaults: Mapping[str, Any], document: Mapping[str, Any],
                       stamp: str | None = None) -> Properties | None:
    """The PUBLISH properties of a document: the operation's, then the document's own (its user
    properties are added after the operation's; any other property of its replaces the operation's).
    None when there are none. Raises PropertyError for a value MQTT cannot carry."""
    values = dict(defaults)
    for name in MQTT5_FIELDS:
        value = document.get(name)
        if value is None:
            continue
        if name == "user_properties":
            value = [*defaults.get("user_properties", ()), *value]
        values[name] = value
    if stamp is not None:  # the document's id for a Listen's duplicate window, after its own pairs
        values["user_properties"] = [*values.get("user_properties", ()), (ID_PROPERTY, stamp)]
    if not values:
        return None
    properties = Properties(PacketTypes.PUBLISH)
    try:
        for name, value in values.items():
            if name == "user_properties":
                pairs = [_pair(item) for item in value]
                if pairs:
                    properties.UserProperty = pairs
            elif name == "correlation_data":
                check_binary(value, "correlation data")
                properties.CorrelationData = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            elif name == "response_topic":
                check_topic_name(value)
                properties.ResponseTopic = value
            elif name == "payload_format_indicator":
                if value not in (0, 1):
                    raise PropertyError(f"payload_format_indicator is 0 or 1, not {value!r}")
                properties.PayloadFormatIndicator = value
            elif name == "message_expiry_interval":
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
                    raise PropertyError(f"message_expiry_interval is whole seconds from 0 to 4294967295, not {value!r}")
                properties.MessageExpiryInterval = value
            else:
                if not isinstance(value, str):
                    raise PropertyError(f"{name} is text, not {type(value).__name__}")
                check_string(value, name.replace("_", " "))
                setattr(properties, _PAHO[name], value)
    except PropertyError:
        raise
    except TopicError as exc:
        raise PropertyError(f"response_topic: {exc}") from None
    except TextError as exc:  # a 16-bit length exceeded, a character MQTT refuses
        raise PropertyError(str(exc)) from None
    except (TypeError, ValueError) as exc:  # paho's own checks (lengths, types)
        raise PropertyError(f"an MQTT 5 property cannot be sent: {exc}") from None
    return properties


def _pair(item: Any) -> tuple[str, str]:
    if (not isinstance(item, (list, tuple)) or len(item) != 2
            or not all(isinstance(part, str) for part in item)):
        raise PropertyError(f"a user property is a [key, value] pair of text, not {item!r:.200}")
    check_string(item[0], "user property's key")
    check_string(item[1], f"user property {item[0][:80]!r}'s value")
    return item[0], item[1]


def property_problems(operation: Mapping[str, Any]) -> list[str]:
    """The Send operation's MQTT 5 properties that MQTT cannot carry: ``"operation NAME: sentence"``
    each (the response topic is a topic rule: :func:`connector.mqtt.topics.operation_problems`)."""
    problems = []
    for name, value in operation_defaults(operation).items():
        if name != "response_topic":
            try:
                publish_properties({name: value}, {})
            except PropertyError as exc:
                problems.append(f"operation {name}: {exc}")
    return problems


def document_properties(properties: Properties | None) -> dict[str, Any]:
    """A received message's MQTT 5 properties as document properties (only those present)."""
    if properties is None:
        return {}
    found: dict[str, Any] = {}
    pairs = getattr(properties, "UserProperty", None)
    if pairs:
        found["user_properties"] = [[key, value] for key, value in pairs]
    for name, attribute in _PAHO.items():
        value = getattr(properties, attribute, None)
        if value is not None:
            found[name] = value
    return found
