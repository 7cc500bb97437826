"""A Send's input options: ``--file -`` (standard input, one document), ``--payload-encoding
hex|base64``, ``--repeat N`` and ``--interval S``. On the embedded broker; what arrived is read
by a Listen in this process."""

from __future__ import annotations

import json
import time

import pytest

from clirun import run_cli
from connector.harness.runtime import Runtime
from connector.harness.sendinputs import LineDecoding
from connector.mqtt.broker import BrokerThread
from connector.sdk.documents import Result, Status

BINARY = bytes(range(256)) + b"\r\n\x00 end\n"


def send_cli(broker: BrokerThread, topic: str, *args: str, input: bytes | None = None):  # type: ignore[no-untyped-def]
    return run_cli("send", "--host", broker.host, "--port", str(broker.port), "--topic", topic, "--qos", "1",
                   *args, input=input)


def heard(runtime: Runtime, connection: dict, topic: str, count: int, *args: str, input: bytes | None = None,
          broker: BrokerThread) -> tuple[list[bytes], object]:
    """What a Send with ``args`` delivers on ``topic`` (``count`` documents expected), and the Send."""
    with runtime.listen_in_background(connection, {"action": "listen", "topic": topic, "qos": 1}, count=count,
                                      timeout=10) as bg:
        bg.wait_ready()
        done = send_cli(broker, topic, *args, input=input)
    return [d.payload for d in bg.documents], done


def test_file_dash_sends_standard_input_as_one_document(runtime: Runtime, connection: dict, broker: BrokerThread,
                                                        unique: str) -> None:
    got, done = heard(runtime, connection, f"{unique}/stdin", 1, "--file", "-", input=BINARY, broker=broker)
    assert done.returncode == 0, done.stderr
    assert got == [BINARY]


def test_hex_lines_are_decoded_and_a_bad_line_is_its_own_application_error(
        runtime: Runtime, connection: dict, broker: BrokerThread, unique: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    results = tmp_path / "results.jsonl"
    lines = b"00ff\nnot hex\n41 42 43\n" + BINARY.hex().encode() + b"\n"
    got, done = heard(runtime, connection, f"{unique}/hex", 3, "--lines", "--payload-encoding", "hex",
                      "--results", str(results), input=lines, broker=broker)
    assert got == [b"\x00\xff", b"ABC", BINARY]
    assert done.returncode == 1
    assert [json.loads(line)["status"] for line in results.read_text().splitlines()] == [
        "SUCCESS", "APPLICATION_ERROR", "SUCCESS", "SUCCESS"]
    assert "error: document 2 (line 2): APPLICATION_ERROR: line 2 is not valid hex" in done.stderr.decode()


def test_a_bad_base64_message_is_exit_2_before_connecting() -> None:
    done = run_cli("send", "--port", "1", "--topic", "t", "--message", "AAE=", "--message", "!!",
                   "--payload-encoding", "base64")  # nothing listens on port 1: a connection would be exit 3
    assert done.returncode == 2
    assert done.stderr.decode() == ("error: --message 2 ('!!') is not valid base64: Only base64 data is allowed; "
                                    "nothing was sent\n")


def test_repeat_and_interval_send_the_input_over_spaced_out(runtime: Runtime, connection: dict,
                                                            broker: BrokerThread, unique: str) -> None:
    started = time.monotonic()
    got, done = heard(runtime, connection, f"{unique}/again", 6, "--message", "a", "--message", "b", "--repeat", "3",
                      "--interval", "0.2", broker=broker)
    assert done.returncode == 0, done.stderr
    assert got == [b"a", b"b"] * 3
    assert time.monotonic() - started >= 5 * 0.2


@pytest.mark.parametrize(("args", "says"), [
    (("--lines", "--repeat", "2"), "--repeat goes with --message or --file: standard input is read only once"),
    (("--file", "-", "--file", "-"), "--file - (standard input) is given more than once"),
    (("--file", "-", "--payload-encoding", "hex"), "--payload-encoding is for --message and --lines"),
    (("--message", "a", "--repeat", "0"), "--repeat must be 1 or more, not 0"),
])
def test_input_options_that_do_not_go_together_are_exit_2(args: tuple[str, ...], says: str) -> None:
    done = run_cli("send", "--port", "1", "--topic", "t", *args, input=b"")
    assert done.returncode == 2 and done.stderr.decode().startswith(f"error: {says}"), done.stderr


def test_results_of_lines_not_decoded_take_their_place() -> None:
    decoding = LineDecoding("hex")
    sent = list(decoding.documents([b"zz", b"01", b"yy", b"xx", b"02", b"ww"]))
    assert sent == [b"\x01", b"\x02"]
    ok = [Result(0, Status.SUCCESS), Result(1, Status.FAILURE, "lost")]
    assert [(r.index, r.status.value) for r in decoding.results(ok)] == [
        (0, "APPLICATION_ERROR"), (1, "SUCCESS"), (2, "APPLICATION_ERROR"), (3, "APPLICATION_ERROR"), (4, "FAILURE"),
        (5, "APPLICATION_ERROR")]
