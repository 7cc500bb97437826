"""A Send's input options: ``--payload-encoding hex|base64`` (binary documents given as text),
``--repeat N`` and ``--interval S`` (test traffic).

Decoding: every ``--message`` is checked before anything is sent (one that is not valid hex or
base64 is exit 2, nothing sent). Lines of standard input are read as they are sent, so a line
that is not valid is that document's APPLICATION_ERROR, in its place; the others are sent.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from connector.harness.exits import UsageError
from connector.sdk.documents import Result, Status

ENCODINGS = ("hex", "base64")


def decode(text: bytes, encoding: str) -> bytes:
    """``text`` (hex: pairs of digits, spaces allowed between bytes; base64: standard, padded)
    as bytes; ValueError in words when it is not."""
    try:
        if encoding == "hex":
            return bytes.fromhex(text.decode("ascii"))
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"not valid {encoding}: {exc}") from None


def decode_messages(messages: Sequence[str], encoding: str) -> list[bytes]:
    """Every ``--message``, decoded; UsageError naming the first that is not valid."""
    decoded = []
    for number, message in enumerate(messages, 1):
        try:
            decoded.append(decode(message.encode("utf-8"), encoding))
        except ValueError as exc:
            raise UsageError(f"--message {number} ({message[:40]!r}) is {exc}; nothing was sent") from None
    return decoded


class LineDecoding:
    """Lines decoded as they are read; one that cannot be is not sent but gets its
    APPLICATION_ERROR result in its place (:meth:`results` puts it there, renumbering the rest)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._sent: deque[int] = deque()  # the input index of each document handed on, in order
        self._bad: deque[tuple[int, str]] = deque()  # (input index, error) of each line not decoded
        self._read = 0

    def documents(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        for line in lines:
            index, self._read = self._read, self._read + 1
            try:
                data = decode(line, self.encoding)
            except ValueError as exc:
                self._bad.append((index, f"line {index + 1} is {exc}"))
                continue
            self._sent.append(index)
            yield data

    def results(self, results: Iterable[Result]) -> Iterator[Result]:
        """The Send's results with the input's numbers, and one for each line not decoded."""
        for result in results:
            index = self._sent.popleft()
            yield from self._refused(index)
            yield dataclasses.replace(result, index=index)
        yield from self._refused(None)

    def _refused(self, before: int | None) -> Iterator[Result]:
        while self._bad and (before is None or self._bad[0][0] < before):
            index, error = self._bad.popleft()
            yield Result(index, Status.APPLICATION_ERROR, error)


def repeated(documents: Callable[[], Iterator[bytes]], times: int) -> Iterator[bytes]:
    """The input ``times`` times over (``documents()`` reads it afresh each time)."""
    return itertools.chain.from_iterable(documents() for _ in range(times))


def paced(documents: Iterator[bytes], seconds: float, stopped: Callable[[], bool]) -> Iterator[bytes]:
    """The documents, ``seconds`` apart; the wait ends the input once ``stopped()``."""
    for number, document in enumerate(documents):
        if number:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                if stopped():
                    return
                time.sleep(min(left, 0.1))
        yield document


def send_input(args: argparse.Namespace, stop: Any, limit: int | None
               ) -> tuple[Iterator[bytes], Callable[[Iterator[Result]], Iterator[Result]]]:
    """The documents of ``send`` (``--message``, ``--file``, ``--lines`` with the options above),
    read until ``stop`` (a GracefulStop) stopped them, and what puts its results in input order
    (the results of lines not decoded among them). UsageError before anything is read."""
    from connector.harness.inputs import input_documents

    encoding, times = args.payload_encoding, args.repeat
    if encoding and args.file:
        raise UsageError("--payload-encoding is for --message and --lines: a --file is sent bytes exact")
    if times is not None and (args.lines or "-" in (args.file or ())):
        raise UsageError("--repeat goes with --message or --file: standard input is read only once")
    if times is not None and times < 1:
        raise UsageError(f"--repeat must be 1 or more, not {times}")
    messages = [m.encode("utf-8") for m in args.message or ()]
    if encoding and messages:
        messages = decode_messages(args.message, encoding)

    def read() -> Iterator[bytes]:
        return input_documents(args.file, args.lines, iter(messages), stop.stopped, limit)

    documents = repeated(read, times) if times is not None else read()
    if args.interval is not None:
        documents = paced(documents, args.interval, stop.stopped)
    documents = stop.documents(documents)
    if not (encoding and args.lines):
        return documents, lambda results: results
    lines = LineDecoding(encoding)
    return lines.documents(documents), lines.results
