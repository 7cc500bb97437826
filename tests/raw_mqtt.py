"""Raw MQTT 3.1.1 packets over a plain socket, for tests that must send what no client library
would (malformed packets, half a CONNECT, silence) or read at their own pace."""

from __future__ import annotations

import socket
import time

from brokers import remaining_length


def string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def connect(client_id: bytes, keep_alive: int = 30, flags: int = 0x02, extra: bytes = b"") -> bytes:
    """CONNECT; ``flags`` 0x02 is clean session; ``extra`` follows the client ID (will, user name)."""
    return packet(0x10, b"\x00\x04MQTT\x04" + bytes([flags]) + keep_alive.to_bytes(2, "big") + string(client_id)
                  + extra)


def will_connect(client_id: bytes, topic: bytes, message: bytes, keep_alive: int, qos: int = 1) -> bytes:
    return connect(client_id, keep_alive, flags=0x02 | 0x04 | (qos << 3), extra=string(topic) + string(message))


def subscribe(topic_filter: bytes, options: int = 0, first: int = 0x82, packet_id: int = 1) -> bytes:
    return packet(first, packet_id.to_bytes(2, "big") + string(topic_filter) + bytes([options]))


def unsubscribe(topic_filter: bytes, first: int = 0xA2) -> bytes:
    return packet(first, b"\x00\x01" + string(topic_filter))


def publish(topic: bytes, payload: bytes = b"x", first: int = 0x30, packet_id: int | None = None) -> bytes:
    return packet(first, string(topic) + (packet_id.to_bytes(2, "big") if packet_id is not None else b"") + payload)


class RawClient:
    """A socket that spoke CONNECT and got its CONNACK; reads packets only when asked."""

    def __init__(self, port: int, client_id: bytes, keep_alive: int = 30, receive_buffer: int | None = None,
                 first: bytes | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so that the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(5)
        self.sock.sendall(first or connect(client_id, keep_alive))
        connack = self._exactly(4)
        assert connack[0] == 0x20 and connack[3] == 0, f"CONNACK {connack.hex()}"

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the broker")
            data += chunk
        return data

    def read_packet(self, timeout: float) -> tuple[int, bytes]:
        """(first byte, body) of the next packet; socket.timeout when none comes in time."""
        self.sock.settimeout(timeout)
        first = self._exactly(1)[0]
        length, shift = 0, 0
        while True:
            digit = self._exactly(1)[0]
            length += (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        return first, self._exactly(length)

    def closed_within(self, seconds: float) -> float | None:
        """Reads (and discards) until the broker closes; the seconds that took, or None."""
        start = time.monotonic()
        self.sock.settimeout(0.2)
        while time.monotonic() - start < seconds:
            try:
                if not self.sock.recv(65536):
                    return time.monotonic() - start
            except socket.timeout:
                continue
            except ConnectionResetError:
                return time.monotonic() - start
        return None

    def close(self) -> None:
        self.sock.close()
