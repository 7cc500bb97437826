"""MQTT's framing of a byte stream, for the client's buffered reads and coalesced writes.

paho-mqtt reads each packet's fixed header and Remaining Length one byte per ``recv()`` and writes
each packet with its own ``send()``. The connector's client (:mod:`connector.mqtt.paho_client`)
instead reads large chunks and splits them here into packets, and joins queued packets into large
writes. Nothing here knows paho.
"""

from __future__ import annotations

from collections.abc import Iterator

#: How many bytes one ``recv()`` asks for, and about how many one ``send()`` is given.
CHUNK = 1 << 16


class FramingError(ValueError):
    """The stream is not MQTT: a Remaining Length longer than MQTT's four bytes."""


class PacketReader:
    """Splits the bytes read from a connection into MQTT packets, keeping an incomplete one's start
    until the rest comes.

    :meth:`packets` yields every complete packet of what was read so far; whatever it does not
    yield stays buffered, so nothing that arrived waits for the socket to become readable again:
    once the generator is exhausted, the buffer holds at most the start of one packet.
    """

    __slots__ = ("_buffer", "need")

    def __init__(self) -> None:
        self._buffer = bytearray()
        #: At least how many more bytes the buffered start of a packet needs (0: nothing buffered).
        self.need = 0

    def clear(self) -> None:
        """Forget what is buffered (the connection it came from is gone)."""
        self._buffer, self.need = bytearray(), 0

    def want(self) -> int:
        """How many bytes to ask the next ``recv()`` for: a chunk, or the rest of a larger packet."""
        return self.need if self.need > CHUNK else CHUNK

    def packets(self, data: bytes) -> Iterator[tuple[int, int, bytes | bytearray]]:
        """``(first byte, remaining length, body)`` of every packet complete once ``data`` is added.
        A consumer that stops early must :meth:`clear` (the connection is being dropped)."""
        if self._buffer:  # the start of a packet: grows in place (a large packet comes in many reads)
            buffer = self._buffer
            buffer += data
            if len(data) < self.need:
                self.need -= len(data)
                return
            data, self._buffer, self.need = buffer, bytearray(), 0
        end = len(data)
        pos = 0
        while pos < end:
            if end - pos < 2:
                break
            byte = data[pos + 1]
            if byte < 0x80:  # the common case: a Remaining Length of one byte
                length, start = byte, pos + 2
            elif pos + 2 < end and data[pos + 2] < 0x80:  # two bytes: packets of 128 B to 16 KiB
                length, start = (byte & 0x7F) | data[pos + 2] << 7, pos + 3
            else:
                length, start = self._long_length(data, pos)
                if start < 0:
                    break
            stop = start + length
            if stop > end:
                self._buffer, self.need = bytearray(data[pos:]), stop - end
                return
            yield data[pos], length, data[start:stop]
            pos = stop
        if pos < end:  # the start of a fixed header: how long its packet is is not known yet
            self._buffer, self.need = bytearray(data[pos:]), 1

    @staticmethod
    def _long_length(data: bytes, pos: int) -> tuple[int, int]:
        """``(remaining length, where the body starts)``; start -1 while its bytes are incomplete."""
        length, shift, index = 0, 0, pos + 1
        while True:
            if index >= len(data):
                return 0, -1
            byte = data[index]
            length |= (byte & 0x7F) << shift
            index += 1
            if byte < 0x80:
                return length, index
            shift += 7
            if index - pos > 4:
                raise FramingError("a Remaining Length of more than four bytes")
