"""Which paho-mqtt the MQTT connector's client was checked against, verified when it is imported.

:mod:`connector.mqtt.paho_client` corrects paho's delivery rules through paho's private names
(tests/test_client_rules.py shows each correction), and private names change without notice. So
before that module touches any of them, this one checks the installed paho-mqtt:

- its version against :data:`CHECKED`: a patch release of a checked series passes silently;
  another minor release of the same major one logs one warning (its internals usually stay, and the
  names are checked next); another major release is refused (its API and internals differ);
- every private name the client uses (:data:`PRIVATE_NAMES`), on real objects: a missing one is
  refused with its name, rather than misbehaving in the middle of a delivery.

A refusal is a :class:`PahoMismatch` of one line: an ImportError of this module and of the
client's, and a PluginError (a broken connector) for the runtime, which shows that line.
"""

from __future__ import annotations

import importlib
import logging
import re
import types
from typing import Any

import paho.mqtt

from connector.sdk.errors import PluginError

log = logging.getLogger("connector.mqtt")

#: The paho-mqtt releases whose internals paho_client.py was checked against: the whole test suite
#: passes on them. Their patch releases pass silently, and pyproject.toml pins their minor series.
CHECKED = ("2.2.0",)
#: What to install instead of another version (pyproject.toml's pin: a test compares the two).
REQUIREMENT = "paho-mqtt>=2.2,<2.3"

#: Every private name of paho-mqtt that paho_client.py uses, by where it lives (a test checks that
#: the list and the module's use agree, and that no other module of the connector uses one).
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "paho.mqtt.client.Client": (
        "_easy_log", "_handle_publish", "_handle_pubrec", "_handle_pubrel", "_host",
        "_in_packet", "_inflight_messages", "_loop_rc_handle", "_out_message_mutex", "_out_messages",
        "_packet_handle", "_port", "_protocol", "_reconnect_delay", "_reconnect_delay_mutex",
        "_reconnect_on_failure", "_reconnect_wait", "_send_puback", "_send_pubcomp", "_send_pubrec", "_sock",
        "_sock_close", "_state", "_thread_terminate", "_update_inflight",
        # the network loop's fast paths (wake-ups, joined writes, buffered reads)
        "_call_socket_register_write", "_callback_api_version", "_do_on_disconnect", "_in_callback_mutex",
        "_last_bytes_received", "_last_msg_out", "_logger", "_loop", "_msgtime_mutex", "_on_socket_register_write",
        "_out_packet", "_packet_queue", "_packet_read", "_packet_write", "_sock_recv", "_sock_send",
        "_sockpairR", "_sockpairW", "_thread", "_userdata",
        # the Send's publish (PahoClient.publish_message)
        "_do_on_publish", "_handle_pubackcomp", "_last_mid", "_max_inflight_messages",
        "_max_queued_messages", "_mid_generate_mutex",
    ),
    "paho.mqtt.client.MQTTMessageInfo": ("_condition", "_published", "_set_as_published"),
    "paho.mqtt.client.MQTTMessage": ("_topic",),  # the Send's messages in paho's session state
    "paho.mqtt.client._WebsocketWrapper": ("_socket",),
    "paho.mqtt": ("_packet",),
    "paho.mqtt._packet": ("decode_pubrel",),
    "paho.mqtt.enums": ("_ConnectionState",),
    "paho.mqtt.enums._ConnectionState": ("MQTT_CS_DISCONNECTED", "MQTT_CS_DISCONNECTING"),
}


class PahoMismatch(PluginError, ImportError):
    """The installed paho-mqtt is not one the MQTT connector's client can use."""


def _series(version: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a version string, or None when it has none."""
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found[1]), int(found[2])) if found else None


def version_problem(version: str, checked: tuple[str, ...] = CHECKED) -> tuple[int, str] | None:
    """``(logging level, one line)`` when ``version`` is not of a checked minor series: WARNING for
    another minor release of a checked major one (or a version that cannot be read), ERROR for
    another major release; None for a checked release or its patch releases."""
    series = _series(version)
    if series is not None and series in {_series(release) for release in checked}:
        return None
    these = " or ".join(checked)
    if series is not None and series[0] not in {int(release.split(".")[0]) for release in checked}:
        return logging.ERROR, (f"paho-mqtt {version} is installed; the MQTT connector works with paho-mqtt "
                               f"{these} (and its patch releases) only, whose internals it relies on: "
                               f"install {REQUIREMENT}")
    return logging.WARNING, (f"paho-mqtt {version} is installed; the MQTT connector was checked against "
                             f"paho-mqtt {these} only and relies on its internals: if delivery misbehaves, "
                             f"install {REQUIREMENT}")


def _places() -> dict[str, Any]:
    """The objects :data:`PRIVATE_NAMES` are looked up on (None where the place itself is gone)."""
    client = importlib.import_module("paho.mqtt.client")
    enums = importlib.import_module("paho.mqtt.enums")
    try:
        packet: Any = importlib.import_module("paho.mqtt._packet")
    except ImportError:
        packet = None
    # Its attributes are set by __init__, which needs a WebSocket handshake: read from its code.
    wrapper = getattr(client, "_WebsocketWrapper", None)
    assigned = wrapper.__init__.__code__.co_names if wrapper is not None else ()
    return {
        # An instance: most of the names are attributes __init__ sets.
        "paho.mqtt.client.Client": client.Client(client.CallbackAPIVersion.VERSION2),
        "paho.mqtt.client.MQTTMessageInfo": client.MQTTMessageInfo(0),
        "paho.mqtt.client.MQTTMessage": client.MQTTMessage(),
        "paho.mqtt.client._WebsocketWrapper": types.SimpleNamespace(**dict.fromkeys(assigned)),
        "paho.mqtt": paho.mqtt,
        "paho.mqtt._packet": packet,
        "paho.mqtt.enums": enums,
        "paho.mqtt.enums._ConnectionState": getattr(enums, "_ConnectionState", None),
    }


def missing_names() -> list[str]:
    """The names of :data:`PRIVATE_NAMES` the installed paho-mqtt lacks, each as ``place.name``."""
    places = _places()
    return [f"{place}.{name}" for place, names in PRIVATE_NAMES.items() for name in names
            if not hasattr(places[place], name)]


def check() -> None:
    """Check the installed paho-mqtt (see the module's docstring): log a warning, or raise
    :class:`PahoMismatch`."""
    version = str(getattr(paho.mqtt, "__version__", "(unknown version)"))
    problem = version_problem(version)
    if problem is not None and problem[0] >= logging.ERROR:
        raise PahoMismatch(problem[1])
    missing = missing_names()
    if missing:
        raise PahoMismatch(f"paho-mqtt {version} lacks {', '.join(missing)}, which the MQTT connector relies on "
                           f"(checked against paho-mqtt {' or '.join(CHECKED)}): install {REQUIREMENT}")
    if problem is not None:
        log.warning("%s", problem[1])


check()
