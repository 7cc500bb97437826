"""A Listen run as a service (``listen --health-port``): /healthz and /readyz follow the connection
through a broker outage, /metrics counts a run's documents exactly, and the edges (unknown path,
port taken, flags without --health-port, prometheus_client missing) answer as the contract says."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from brokers import MosquittoBroker, missing
from clirun import run_cli, start_cli
from connector.harness.listening import ProcessListener
from connector.harness.metrics import metrics_page
from connector.harness.runtime import Runtime
from connector.harness.service import ServiceOptions, ServiceServer
from connector.sdk.documents import Document

#: Generous bounds for waiting on events: the machine may be loaded many times over.
WAIT = 30.0


def need_prometheus_client() -> None:
    """--metrics needs the ``service`` extra: skipped without it (failed in CI, which installs it)."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        missing("prometheus_client not installed (pip install -e '.[service]')")


def get(url: str) -> tuple[int, str]:
    """GET ``url``: its status and body (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def until(check: Callable[[], bool], what: str, seconds: float = WAIT) -> float:
    """Poll ``check`` until it holds (an HTTP answer: the event itself); when it did (monotonic)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        time.sleep(0.05)
    return time.monotonic()


def metrics(url: str) -> dict[str, float]:
    """The samples of ``url/metrics``: ``name{labels}`` -> value."""
    status, text = get(url + "/metrics")
    assert status == 200
    return {name: float(value) for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.MULTILINE)}


def served_url(proc: subprocess.Popen) -> str:
    """The address a Listen started with --health-port 0 printed (its first line on stderr)."""
    line = proc.stderr.readline().decode()
    found = re.match(r"health checks on (http://127\.0\.0\.1:\d+)/healthz and /readyz", line)
    assert found, (line, proc.stderr.read().decode() if proc.poll() is not None else "")
    return found.group(1)


def stop(proc: subprocess.Popen) -> tuple[int, bytes]:
    """SIGTERM our Listen by its pid; its exit code and stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT)
    return proc.returncode, err


def test_health_follows_the_broker_away_and_back(tmp_path: Path, unique: str) -> None:
    need_prometheus_client()
    threshold = 2.0
    mosquitto = MosquittoBroker(tmp_path / "mosquitto").start()
    listen = None
    try:
        listen = start_cli("listen", "--port", str(mosquitto.port), "--topic", f"{unique}/#", "--qos", "1",
                           "--reconnect-delay", "0.1", "--reconnect-max-delay", "0.5", "--health-port", "0",
                           "--health-threshold", str(threshold), "--metrics")
        url = served_url(listen)
        until(lambda: get(url + "/readyz") == (200, "ok: subscribed\n"), "ready once subscribed")
        assert get(url + "/healthz") == (200, "ok: connected\n")
        sent = run_cli("send", "--port", str(mosquitto.port), "--topic", f"{unique}/a", "--qos", "1",
                       "--message", "1", "--message", "2", "--message", "3")
        assert sent.returncode == 0, sent.stderr
        until(lambda: metrics(url)["connector_listen_documents_acknowledged_total"] == 3, "3 documents acknowledged")

        stopped_at = time.monotonic()
        mosquitto.stop()
        until(lambda: get(url + "/readyz")[0] == 503, "not ready once the broker is gone")
        status, body = get(url + "/healthz")
        assert status == 200 and body.startswith("ok: disconnected for "), body  # within the threshold
        unhealthy_at = until(lambda: get(url + "/healthz")[0] == 503, "unhealthy after the threshold",
                             threshold + WAIT)
        assert unhealthy_at - stopped_at >= threshold  # never before: it counts from the loss, not before it
        assert "longer than the threshold of 2 s" in get(url + "/healthz")[1]
        assert metrics(url)["connector_listen_connected"] == 0

        mosquitto.start()  # the same port
        until(lambda: get(url + "/readyz")[0] == 200, "ready again once subscribed again")
        assert get(url + "/healthz") == (200, "ok: connected\n")
        counted = metrics(url)
        assert counted["connector_listen_reconnects_total"] == 1
        assert counted["connector_listen_documents_received_total"] == 3
        assert counted["connector_listen_documents_in_flight"] == 0
        code, err = stop(listen)
        assert code == 0, err
        with pytest.raises(OSError):  # the port was closed with the Listen
            socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5).close()
    finally:
        if listen is not None and listen.poll() is None:
            listen.kill()
            listen.communicate()
        mosquitto.stop()


def test_metrics_count_a_runs_documents_exactly(mosquitto: MosquittoBroker, unique: str) -> None:
    """30 documents, 3 of which the process refuses every attempt (dead letters), 5 sent again with
    the same msg-id (repeats dropped), 2 stored retained messages skipped."""
    need_prometheus_client()
    runtime = Runtime(default_connector="mqtt")
    conn = {"host": mosquitto.host, "port": mosquitto.port, "protocol": "5"}
    for i in range(2):
        results = list(runtime.send(conn, {"action": "send", "topic": f"{unique}/in/old{i}", "qos": 1,
                                           "retained": True}, ["stored"]))
        assert results[0].ok
    refused = {"7", "17", "27"}
    taken: list[str] = []

    def process(document: Document) -> None:
        if document.payload.decode() in refused:
            raise ValueError("refused on purpose")
        taken.append(document.payload.decode())

    listener = ProcessListener(process)
    server = ServiceServer(listener, ServiceOptions(0, metrics=True),
                           metrics_page(listener, {"connector": "mqtt", "version": "test"})).start()
    operation = {"action": "listen", "topic": f"{unique}/in/#", "qos": 1, "max_attempts": 2, "retry_delay": 0,
                 "dead_letter_topic": f"{unique}/dead", "dedupe_window": 100, "skip_retained": True}
    thread = threading.Thread(target=runtime.listen, args=(conn, operation, process), kwargs={"listener": listener})
    thread.start()
    try:
        until(lambda: get(server.url + "/readyz")[0] == 200, "subscribed")

        def documents(ids: range) -> list[Document]:
            return [Document(str(i).encode(), {"user_properties": [["msg-id", f"{unique}-{i}"]]}) for i in ids]

        send = {"action": "send", "topic": f"{unique}/in/a", "qos": 1}
        assert all(r.ok for r in runtime.send(conn, send, documents(range(30))))
        assert all(r.ok for r in runtime.send(conn, send, documents(range(5))))  # the same msg-ids again
        until(lambda: metrics(server.url)["connector_listen_documents_acknowledged_total"] == 37, "all let go")
        counted = metrics(server.url)
    finally:
        listener.stop()
        thread.join(WAIT)
        server.close()
    assert sorted(taken, key=int) == [str(i) for i in range(30) if str(i) not in refused]
    expected = {"received_total": 37, "accepted_total": 27, "acknowledged_total": 37, "retried_total": 3,
                "dead_lettered_total": 3, "repeats_dropped_total": 5, 'skipped_total{reason="retained"}': 2,
                "in_flight": 0}
    assert {name: counted[f"connector_listen_documents_{name}"] for name in expected} == expected
    assert counted["connector_listen_reconnects_total"] == 0
    assert 0 <= counted["connector_listen_last_document_age_seconds"] < WAIT
    assert counted['connector_listen_info{connector="mqtt",version="test"}'] == 1


def test_an_unknown_path_is_404_and_head_has_no_body() -> None:
    listener = ProcessListener(lambda document: None)
    server = ServiceServer(listener, ServiceOptions(0)).start()
    try:
        status, body = get(server.url + "/nope")
        assert status == 404 and "/healthz" in body
        assert get(server.url + "/metrics")[0] == 404  # served only with --metrics
        assert get(server.url + "/readyz") == (503, "failing: not connected yet\n")
        request = urllib.request.Request(server.url + "/healthz", method="HEAD")
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            assert answer.status == 200 and answer.read() == b""
    finally:
        server.close()


def test_a_health_port_taken_is_exit_3_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("listen", "--port", "1", "--topic", "a", "--health-port", str(port))
    err = result.stderr.decode()
    assert result.returncode == 3
    assert err == f"error: cannot serve health checks on 127.0.0.1:{port}: the port is taken: give another " \
                  "--health-port, or 0 for a free one\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--metrics"], "error: --metrics needs --health-port\n"),
    (["--health-host", "0.0.0.0", "--health-threshold", "5"],
     "error: --health-host and --health-threshold need --health-port\n"),
    (["--health-port", "65536"], "error: argument --health-port: must be a port number from 0 (a free one) to "
                                 "65535, not '65536' (see 'mqtt-connector listen --help')\n"),
    (["--health-port", "0", "--health-threshold", "0"], "error: argument --health-threshold: must be more than 0 "),
    (["--health-port", "0", "--health-host", "no such host"], "error: --health-host 'no such host': no such host "
                                                              "or address on this machine\n"),
    (["--health-port", "0", "--topic", "a/#", "--dead-letter-topic", "a/dead"],
     "error: --dead-letter-topic: the Listen's filter 'a/#' matches"),  # checked before the port is taken
])
def test_bad_service_flags_are_exit_2_in_one_line(argv: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "connector", "listen", "--port", "1", "--topic", "a", *argv],
                            capture_output=True, timeout=WAIT)
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_metrics_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "prometheus_client.py").write_text("raise ImportError('No module named prometheus_client')\n")
    result = run_cli("listen", "--port", "1", "--topic", "a", "--health-port", "0", "--metrics",
                     env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.decode() == ("error: --metrics needs the Python package prometheus_client (the 'service' "
                                      "extra): pip install prometheus_client\n")


def test_a_listen_waiting_for_its_broker_is_healthy_until_the_threshold() -> None:
    with socket.socket() as nobody:  # a port where no broker answers
        nobody.bind(("127.0.0.1", 0))
        port = nobody.getsockname()[1]
    listen = start_cli("listen", "--port", str(port), "--topic", "a", "--wait-for-broker", "60",
                       "--health-port", "0", "--health-threshold", "1")
    try:
        url = served_url(listen)
        assert get(url + "/readyz") == (503, "failing: not connected yet\n")
        until(lambda: get(url + "/healthz")[0] == 503, "unhealthy once waiting longer than the threshold")
        assert get(url + "/healthz")[1].startswith("failing: not connected yet after ")
    finally:
        listen.kill()  # our own pid: it waits for a broker that never comes
        listen.communicate()
