"""What a connector's tests give the acceptance kit: a live endpoint and how to observe it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Endpoint:
    """A live endpoint of the connector under test, set up by the connector's own tests.

    A fresh place per test (a unique topic, a new folder): the kit's tests count what arrives.
    """

    #: A connection configuration that reaches the endpoint.
    connection: dict[str, Any]
    #: A Send operation whose documents ``arrived`` sees.
    send_operation: dict[str, Any]
    #: A Listen operation that receives what ``put`` puts there. With ``connection``, the place
    #: keeps what no Listen acknowledged, so that a second Listen gets it (a folder does; a broker
    #: does for a persistent session with a stable client id).
    listen_operation: dict[str, Any]
    #: ``put(payloads)``: make these payloads arrive for the Listen, in order.
    put: Callable[[list[bytes]], None]
    #: ``arrived(count, timeout)``: the payloads the Send delivered so far, waiting up to ``timeout``
    #: seconds until there are at least ``count``.
    arrived: Callable[[int, float], list[bytes]]
    #: A connection configuration that cannot connect (``check`` exits 3 at once).
    unreachable: dict[str, Any]
    #: A value for the Listen operation's ``dead_letter_topic`` whose dead letters ``arrived`` sees
    #: (e.g. the Send operation's own destination); None: the dead-letter test is skipped.
    dead_letter_topic: str | None = None
