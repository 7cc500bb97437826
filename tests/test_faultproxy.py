"""The fault-injecting TCP proxy (tests/faultproxy.py), proved with plain sockets and an echo server
of its own, then with a real MQTT round trip through it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from faultproxy import HIGH_WATER, READ_SIZE, FaultProxy

WAIT = 10.0  # the most any event below is waited for


def wait_until(condition: Callable[[], bool], seconds: float = WAIT, message: str = "condition") -> None:
    """Polls ``condition`` (cheap, in-process) until true; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:g} s waiting for {message}")
        time.sleep(0.005)


class EchoServer:
    """A TCP echo server on a free port: one thread per connection, each echoing bytes back exactly.

    Records how many connections it accepted, how many ended by an error (a reset) or an EOF, and the
    bytes it received; ``close()`` closes everything and joins its threads.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.accepted = 0
        self.resets = 0
        self.eofs = 0
        self.received = 0
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            self._relay(conn)
        finally:
            conn.close()

    def _relay(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                data = conn.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                with self.lock:
                    self.resets += 1
                return
            if not data:
                with self.lock:
                    self.eofs += 1
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                self.received += len(data)
            try:
                conn.settimeout(WAIT)
                conn.sendall(data)
                conn.settimeout(0.1)
            except OSError:
                with self.lock:
                    self.resets += 1
                return

    def close(self) -> None:
        self.stopping.set()
        self.acceptor.join(WAIT)
        for thread in self.threads:
            thread.join(WAIT)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo.port) as running:
        yield running


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(1 << 20, size - got))
        if not chunk:
            raise AssertionError(f"EOF after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def round_trip(sock: socket.socket, data: bytes = b"ping") -> None:
    sock.sendall(data)
    assert recv_exactly(sock, len(data)) == data


def assert_cut(sock: socket.socket) -> None:
    """The connection was closed under the client: a reset, or at least an EOF, within WAIT."""
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass


def nothing_arrives(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(WAIT)
    return False  # bytes, or an EOF


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("FaultProxy-")]


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def test_relays_bytes_exactly_both_ways(proxy: FaultProxy, echo: EchoServer) -> None:
    payload = os.urandom(5 * 1024 * 1024)
    with connect(proxy.port) as sock:
        sender_error: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
            except BaseException as exc:  # reported by the main thread
                sender_error.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        back = recv_exactly(sock, len(payload))
        sender.join(WAIT)
        assert not sender_error
        assert back == payload
        assert echo.received == len(payload)
        assert proxy.bytes_up == len(payload)
        wait_until(lambda: proxy.bytes_down == len(payload), message="bytes_down")
        assert proxy.connections == 1 and proxy.accepted == 1
        # an orderly close is passed on: EOF to the server, which closes its side too
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""
    wait_until(lambda: proxy.connections == 0, message="the closed connection to be forgotten")
    assert echo.eofs == 1 and echo.resets == 0 and proxy.cuts == 0


def test_many_connections_at_once(proxy: FaultProxy) -> None:
    socks = [connect(proxy.port) for _ in range(20)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(f"hello {i}".encode())
        for i, sock in enumerate(socks):
            expected = f"hello {i}".encode()
            assert recv_exactly(sock, len(expected)) == expected
        assert proxy.connections == 20 and proxy.accepted == 20
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: proxy.connections == 0, message="all connections closed")


def test_cut_resets_both_sides_and_accepts_again(proxy: FaultProxy, echo: EchoServer) -> None:
    a, b = connect(proxy.port), connect(proxy.port)
    with a, b:
        round_trip(a)
        round_trip(b)
        assert proxy.connections == 2
        assert proxy.cut() == 2
        assert proxy.connections == 0 and proxy.cuts == 2
        assert_cut(a)
        assert_cut(b)
        wait_until(lambda: echo.resets == 2, message="the server to see both resets")
        assert echo.eofs == 0  # a reset, not an orderly close
    with connect(proxy.port) as again:
        round_trip(again, b"after the cut")
        assert proxy.connections == 1 and proxy.accepted == 3
    wait_until(lambda: proxy.connections == 0, message="the closed connection to be forgotten")


def test_cut_with_nothing_open_returns_zero(proxy: FaultProxy) -> None:
    assert proxy.cut() == 0
    assert proxy.cuts == 0


def test_down_refuses_and_up_listens_on_the_same_port(proxy: FaultProxy, echo: EchoServer) -> None:
    port = proxy.port
    with connect(port) as sock:
        round_trip(sock)
        proxy.down()
        assert not proxy.listening
        assert proxy.connections == 0 and proxy.cuts == 1
        assert_cut(sock)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    proxy.down()  # twice is fine
    proxy.up()
    assert proxy.listening and proxy.port == port
    with connect(port) as sock:
        round_trip(sock, b"back up")
    proxy.up()  # already up: nothing changes
    with connect(port) as sock:
        round_trip(sock, b"still up")


def test_stall_holds_bytes_and_resume_delivers_them_in_order(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy.port) as sock:
        round_trip(sock)
        received_before = echo.received
        proxy.stall()
        assert proxy.stalled
        sock.sendall(b"first;")
        sock.sendall(b"second;")
        assert nothing_arrives(sock, 0.3)
        assert echo.received == received_before  # held in the proxy, not passed on
        assert proxy.connections == 1
        proxy.resume()
        assert recv_exactly(sock, len(b"first;second;")) == b"first;second;"


def test_stall_after_passes_exactly_that_many_bytes_then_holds_the_rest(proxy: FaultProxy, echo: EchoServer) -> None:
    payload = os.urandom(300_000)
    with connect(proxy.port) as sock:
        round_trip(sock)
        proxy.stall_after(100_001)
        assert not proxy.stalled
        sock.sendall(payload[:50_000])
        assert recv_exactly(sock, 50_000) == payload[:50_000]  # under the mark: relayed as usual
        sock.sendall(payload[50_000:])  # one write across the mark
        wait_until(lambda: proxy.stalled, message="the stall at the mark")
        wait_until(lambda: echo.received == 4 + 100_001, message="the bytes up to the mark")
        assert nothing_arrives(sock, 0.3)  # not even their echo: a stall holds both ways
        assert echo.received == 4 + 100_001 and proxy.bytes_up == 4 + 100_001
        proxy.resume()
        assert recv_exactly(sock, 250_000) == payload[50_000:]
        assert not proxy.stalled  # the mark stalls once


def test_stall_after_nothing_is_a_stall_now(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy.port) as sock:
        round_trip(sock)
        proxy.stall_after(0)
        assert proxy.stalled
        sock.sendall(b"held")
        assert nothing_arrives(sock, 0.3)
        proxy.resume()
        assert recv_exactly(sock, 4) == b"held"
    with pytest.raises(ValueError):
        proxy.stall_after(-1)


def test_stall_with_more_than_the_buffer_applies_backpressure(proxy: FaultProxy, echo: EchoServer) -> None:
    payload = os.urandom(3 * HIGH_WATER)
    with connect(proxy.port) as sock:
        proxy.stall()
        sent = threading.Event()
        errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
                sent.set()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        assert nothing_arrives(sock, 0.3)
        assert echo.received == 0 and proxy.bytes_up == 0
        # the proxy holds no more than its high-water mark (plus one read), the rest waits in the
        # kernel's buffers (loopback's are large, so the sender itself may well not block)
        wait_until(lambda: proxy.waiting() >= HIGH_WATER, message="the proxy's buffer to fill")
        sent.wait(0.3)
        assert HIGH_WATER <= proxy.waiting() < HIGH_WATER + READ_SIZE
        proxy.resume()
        back = recv_exactly(sock, len(payload))
        sender.join(WAIT)
        assert not errors and sent.is_set()
        assert back == payload


def test_stall_then_cut_drops_what_waited(proxy: FaultProxy, echo: EchoServer) -> None:
    with connect(proxy.port) as sock:
        round_trip(sock)
        proxy.stall()
        sock.sendall(b"lost")
        assert nothing_arrives(sock, 0.1)
        assert proxy.cut() == 1
        assert_cut(sock)
    proxy.resume()
    with connect(proxy.port) as sock:
        round_trip(sock)
    assert echo.received == len(b"ping") * 2


def test_cut_every_cuts_count_times_then_stops(proxy: FaultProxy) -> None:
    proxy.cut_every(0.3, count=3)
    seen_cut = 0
    deadline = time.monotonic() + WAIT
    while proxy.cut_rounds < 3:
        assert time.monotonic() < deadline, "the periodic cuts did not happen"
        with connect(proxy.port) as sock:
            round_trip(sock)
            sock.settimeout(2)
            try:
                data = sock.recv(1)
            except ConnectionResetError:
                seen_cut += 1
            except TimeoutError:
                continue  # 2 s without a cut can only mean the rounds are over
            else:
                assert data == b""
                seen_cut += 1
    assert proxy.cut_rounds == 3
    assert 1 <= seen_cut == proxy.cuts
    # no fourth round: a new connection survives more than three periods
    with connect(proxy.port) as sock:
        assert nothing_arrives(sock, 1.0)
        round_trip(sock, b"not cut")
    assert proxy.cut_rounds == 3


def test_stop_cutting(proxy: FaultProxy) -> None:
    proxy.cut_every(0.05)
    wait_until(lambda: proxy.cut_rounds >= 2, message="two periodic cuts")
    proxy.stop_cutting()
    rounds = proxy.cut_rounds
    with connect(proxy.port) as sock:
        assert nothing_arrives(sock, 0.3)
        round_trip(sock)
    assert proxy.cut_rounds == rounds


def test_target_refusing_resets_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead_port = placeholder.getsockname()[1]
    with FaultProxy("127.0.0.1", dead_port) as proxy:
        try:
            with connect(proxy.port) as sock:
                assert_cut(sock)
        except ConnectionResetError:  # the reset came before connect() returned: cut all the same
            pass
        wait_until(lambda: proxy.refused_upstream == 1, message="the refused connect to be counted")
        assert proxy.connections == 0 and proxy.accepted == 1 and proxy.cuts == 0


def test_close_is_prompt_and_leaves_no_thread_or_socket(echo: EchoServer) -> None:
    before_fds, before_threads = open_fds(), set(proxy_threads())
    proxy = FaultProxy("127.0.0.1", echo.port).start()
    socks = [connect(proxy.port) for _ in range(5)]
    for sock in socks:
        round_trip(sock)
    proxy.stall()
    socks[0].sendall(b"waiting")
    proxy.cut_every(10)
    assert len(proxy_threads()) == len(before_threads) + 1  # one relay thread, whatever the connections
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 1.0
    assert set(proxy_threads()) == before_threads
    for sock in socks:
        assert_cut(sock)
        sock.close()
    wait_until(lambda: echo.resets == 5, message="the echo server to see the resets")
    wait_until(lambda: open_fds() == before_fds, message="every socket closed")
    proxy.close()  # twice is fine
    with pytest.raises(RuntimeError):
        proxy.cut()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)


def test_never_started_proxy_closes_cleanly() -> None:
    before = open_fds()
    proxy = FaultProxy("127.0.0.1", 9)
    assert proxy.port > 0
    proxy.close()
    assert open_fds() == before


def test_carries_mqtt_and_paho_reconnects_after_a_cut(mosquitto) -> None:
    import paho.mqtt.client as mqtt

    received: list[bytes] = []
    got = threading.Condition()
    connects = threading.Semaphore(0)

    def on_connect(client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.subscribe("faultproxy/t", qos=1)

    def on_subscribe(client, userdata, mid, reasons, properties) -> None:
        connects.release()

    def on_message(client, userdata, message) -> None:
        with got:
            received.append(message.payload)
            got.notify_all()

    with FaultProxy(mosquitto.host, mosquitto.port) as proxy:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"faultproxy-{os.getpid()}")
        client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
        client.connect("127.0.0.1", proxy.port, keepalive=10)
        client.loop_start()
        try:
            assert connects.acquire(timeout=WAIT), "no SUBACK through the proxy"
            count = 200
            for i in range(count):
                client.publish("faultproxy/t", f"m{i}", qos=1)
            with got:
                assert got.wait_for(lambda: len(received) >= count, WAIT), f"only {len(received)} of {count}"
            assert received[:count] == [f"m{i}".encode() for i in range(count)]
            assert proxy.bytes_up > 0 and proxy.bytes_down > 0
            assert proxy.cut() == 1
            assert connects.acquire(timeout=WAIT), "paho did not reconnect and subscribe again after the cut"
            client.publish("faultproxy/t", b"after the cut", qos=1)
            with got:
                assert got.wait_for(lambda: b"after the cut" in received, WAIT)
            assert proxy.accepted == 2 and proxy.connections == 1
        finally:
            client.disconnect()
            client.loop_stop()
