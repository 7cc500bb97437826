"""``bench``: a user measures their broker with the connector's settings: rates and latency
percentiles in a small table, exit 0; a broker that cannot be reached is exit 3."""

from __future__ import annotations

import re
import socket

from clirun import run_cli
from connector.mqtt.bench import BenchResult, table
from connector.mqtt.broker import BrokerThread


def test_bench_prints_rates_and_latency_percentiles(broker: BrokerThread) -> None:
    done = run_cli("bench", "--host", broker.host, "--port", str(broker.port), "--count", "200", "--qos", "1",
                   "--size", "64", "--topic-prefix", "bench-test")
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert re.match(r"200 messages of 64 B at QoS 1 on 'bench-test/[0-9a-f]{12}'\n", out), out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}
    for row in ("publish", "subscribe"):
        count, seconds, rate = rows[row]
        assert count == "200" and float(seconds) > 0, out
        assert abs(float(rate.replace(",", "")) * float(seconds) - 200) < 200 * 0.01 + 1, out  # rate x time = count
    p50, p90, p99, most = (float(v) for v in out.splitlines()[-1].split())
    assert 0 < p50 <= p90 <= p99 <= most < 10_000, out


def test_the_seconds_keep_three_significant_digits_however_short_the_run() -> None:
    # 200 messages in 34.8 ms: "0.03" would say 6,667/s beside a rate of 5,747
    result = BenchResult("t", 200, published=200, publish_seconds=0.0348, received=200, receive_seconds=1.6234)
    rows = [line.split() for line in table(result, 1, 64).splitlines()[2:4]]
    assert rows == [["publish", "200", "0.0348", "5,747"], ["subscribe", "200", "1.62", "123"]]
    long = BenchResult("t", 10, published=10, publish_seconds=123.4, received=0, receive_seconds=0.0)
    assert [line.split() for line in table(long, 1, 64).splitlines()[2:4]] == [
        ["publish", "10", "123", "0"], ["subscribe", "0", "0", "-"]]


def test_bench_on_an_unreachable_broker_is_exit_3() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_cli("bench", "--host", "127.0.0.1", "--port", str(port), "--count", "5", "--connect-timeout", "2")
    assert done.returncode == 3, done.stderr
    assert done.stderr.decode().startswith("error: connection refused") and b"Traceback" not in done.stderr
    assert done.stdout == b""


def test_bench_refuses_a_payload_too_small_for_its_time_stamp(broker: BrokerThread) -> None:
    done = run_cli("bench", "--host", broker.host, "--port", str(broker.port), "--size", "4")
    assert (done.returncode, done.stderr) == (2, b"error: --size must be at least 8 bytes (each message carries its "
                                                  b"time)\n")
