"""The connector side by side with raw paho-mqtt and Mosquitto's C clients, through a Mosquitto of its own.

    python -m bench              # the full run, 5 repeats
    python -m bench --quick      # a smoke run under a minute, into a temporary folder (CI)
    python bench/run.py --repeats 7

Starts Mosquitto on a free port with its own configuration (never the system one), then, with
runs interleaved (the order reverses at every repeat), measures:

- Send and Listen through the connector's command line and Python API against raw paho-mqtt as a
  competent user writes it (bench/workers.py), QoS 0/1/2, payloads of 256 B and 64 KiB;
- the acceptance workloads: ``send --lines`` of 50,000 (QoS 0) and 20,000 (QoS 1) lines of 200
  bytes, and a Listen draining a 20,000-message QoS 1 backlog of a persistent session to stdout,
  also through ``mosquitto_pub -l`` and ``mosquitto_sub -F %j`` (the ceiling);
- the embedded broker (``mqtt-connector broker``) against Mosquitto, with each broker's CPU per message;
- end-to-end latency p50/p99 at a fixed 1,000 messages/s;
- peak RSS of ``send --lines`` and ``listen`` over 1,000,000 QoS 0 documents, against 1,000;
- ``mqtt-connector --help`` start-up time;
- a profile of where the time goes per message (bench/profile.py).

Writes bench-results.json, bench-results.md and bench.png (docs/ by default, which also updates
docs/performance.md) and prints a table with the issue's targets met or missed. Speed is never
asserted by the test suite; this is where it is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent
CLI = [str(BIN / "mqtt-connector")] if (BIN / "mqtt-connector").exists() else [PY, "-m", "connector"]
TOPIC = "bench/t"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# -- Mosquitto ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _started(broker, seconds: float, failure: str):  # type: ignore[no-untyped-def]
    """``broker`` once its port accepts connections; stopped, and SystemExit(failure), if it does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and broker.proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
            return broker
        except OSError:
            time.sleep(0.05)
    broker.stop()
    raise SystemExit(failure)


class Mosquitto:
    """``mosquitto -c CONF`` on a free port, configured for benchmarks; stopped by its pid."""

    name = "mosquitto"

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
        if binary is None:
            raise SystemExit("mosquitto is not installed (Debian package mosquitto)")
        self.binary, self.port, self.folder = binary, free_port(), folder
        lines = [
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            "log_dest stderr", "log_type error", "log_type warning",
            "set_tcp_nodelay true",
            # a persistent session's backlog must hold a whole workload (the default drops past 1000)
            "max_queued_messages 0", "max_queued_bytes 0", "queue_qos0_messages true",
            # the broker's window towards each client, the same as the clients' (connector default)
            "max_inflight_messages 20",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', which cannot read our temp folder
        (folder / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def version(self) -> str:
        """``mosquitto version 2.0.11`` (the first line of ``mosquitto -h``)."""
        lines = subprocess.run([self.binary, "-h"], capture_output=True, text=True).stdout.splitlines()[:1]
        return lines[0] if lines else "?"

    def start(self) -> Mosquitto:
        log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.folder / "mosquitto.conf")],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return _started(self, 10, "mosquitto did not start")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Embedded:
    """The connector's embedded broker (``mqtt-connector broker``) on a free port, its queues wide
    enough for a whole backlog like Mosquitto's above; stopped by its pid."""

    name = "embedded"

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.proc: subprocess.Popen | None = None

    def start(self) -> Embedded:
        log = open(self.folder / "embedded.log", "ab")
        self.proc = subprocess.Popen([*CLI, "broker", "--port", str(self.port), "--max-queued-messages", "10000000",
                                      "--max-queued-bytes", str(1 << 40)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=ENV)
        return _started(self, 20, f"the embedded broker did not start (see {self.folder / 'embedded.log'})")

    stop = Mosquitto.stop


# -- running things ----------------------------------------------------------------------------

class Bench:
    def __init__(self, broker: Mosquitto, tmp: Path, quick: bool) -> None:
        self.broker, self.tmp, self.quick = broker, tmp, quick
        self.port = broker.port
        self.seq = 0

    def worker(self, mode: str, *args: object, stdin=None, stdout=subprocess.DEVNULL) -> dict:  # type: ignore[no-untyped-def]
        """Run a bench worker; its report (JSON) plus the wall time of the whole process."""
        report = self.tmp / f"report-{self.seq}.json"
        self.seq += 1
        cmd = [PY, "-m", "bench.workers", mode, "--port", str(self.port), "--report", str(report),
               *map(str, args)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=ENV, timeout=300)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{mode} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
        data = json.loads(report.read_text().splitlines()[-1]) if report.exists() else {}
        data["wall"] = wall
        return data

    def cli(self, *args: object, stdin=None, stdout=subprocess.DEVNULL) -> float:  # type: ignore[no-untyped-def]
        cmd = [*CLI, *map(str, args), "--port", str(self.port)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=ENV, timeout=300)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
        return wall

    def c_client(self, program: str, *args: object, stdin=None, stdout=subprocess.DEVNULL) -> float:  # type: ignore[no-untyped-def]
        """Mosquitto's own client (``mosquitto_pub``/``mosquitto_sub``, C): the wall time of the process."""
        cmd = [program, "-h", "127.0.0.1", "-p", str(self.port), "--nodelay", *map(str, args)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=300)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
        return wall

    def lines_file(self, count: int, size: int) -> Path:
        path = self.tmp / f"lines-{count}-{size}.txt"
        if not path.exists():
            from bench.workers import payloads

            with open(path, "wb") as f:
                for payload in payloads(count, size):
                    f.write(payload + b"\n")
        return path

    # Send ---------------------------------------------------------------------------------

    def send_cli(self, impl: str, qos: int, count: int, size: int) -> dict:
        path = self.lines_file(count, size)
        with open(path, "rb") as f:
            if impl == "connector":
                wall = self.cli("send", "--topic", TOPIC, "--qos", qos, "--lines", stdin=f)
            elif impl == "c":
                from bench.workers import DEFAULT_WINDOW

                wall = self.c_client("mosquitto_pub", "-t", TOPIC, "-q", qos, "-l", "-M", DEFAULT_WINDOW, stdin=f)
            else:
                wall = self.worker("raw-send", "--stdin", "--qos", qos, stdin=f)["wall"]
        return {"seconds": wall}

    def send_api(self, impl: str, qos: int, count: int, size: int) -> dict:
        mode = "api-send" if impl == "connector" else "raw-send"
        data = self.worker(mode, "--qos", qos, "--count", count, "--size", size)
        if data["done"] != count:
            raise RuntimeError(f"{mode}: {data}")
        return {"seconds": data["seconds"], "cpu_seconds": data["cpu_seconds"]}

    # Listen -------------------------------------------------------------------------------

    def listen_round(self, qos: int, count: int, size: int, order: list[str]) -> dict[str, dict]:
        """One backlog, filled once for a persistent session of each contender in ``order`` (cli,
        api, raw, c: mosquitto_sub), drained by each in turn."""
        ids = {who: f"bench-{who}-{self.seq}-{os.getpid()}" for who in order}
        # A topic of its own: the sessions stay at the broker, and must not queue later Sends' messages.
        topic = f"bench/listen/{self.seq}"
        for client_id in ids.values():
            self.worker("session", "--client-id", client_id, "--qos", qos, "--topic", topic)
        self.worker("raw-send", "--qos", qos, "--count", count, "--size", size, "--topic", topic)  # the backlog
        out: dict[str, dict] = {}
        for who in order:
            sink = self.tmp / "listen.out"
            with open(sink, "wb") as f:
                if who == "cli":
                    wall = self.cli("listen", "--topic", topic, "--qos", qos, "--persistent", "--client-id",
                                    ids[who], "--count", count, "--timeout", 120, stdout=f)
                    out[who] = {"seconds": wall}
                elif who == "c":
                    wall = self.c_client("mosquitto_sub", "-t", topic, "-q", qos, "-c", "-i", ids[who], "-C", count,
                                         "-F", "%j", "-W", 120, stdout=f)
                    out[who] = {"seconds": wall}
                else:
                    data = self.worker(f"{who}-listen", "--client-id", ids[who], "--qos", qos, "--count", count,
                                       "--timeout", 120, "--topic", topic, stdout=f)
                    out[who] = {"seconds": data["seconds"], "wall": data["wall"], "cpu_seconds": data["cpu_seconds"]}
            lines = _count_lines(sink)
            if lines != count:
                raise RuntimeError(f"Listen {who} wrote {lines} lines, expected {count}")
        return out

    def fixed_costs(self) -> dict[str, float]:
        """The wall time of a one-document run: process start, connect, disconnect."""
        one = self.tmp / "one.txt"
        one.write_bytes(b"x\n")
        with open(one, "rb") as f:
            cli = self.cli("send", "--topic", TOPIC, "--qos", 1, "--lines", stdin=f)
        with open(one, "rb") as f:
            raw = self.worker("raw-send", "--stdin", "--qos", 1, stdin=f)["wall"]
        return {"connector": cli, "raw": raw}


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- the workloads -----------------------------------------------------------------------------

#: The issue's throughput targets, per acceptance workload: connector / raw paho and connector /
#: Mosquitto's own C client (``c``), medians of the per-repeat ratios, for the CLI and the Python API.
TARGETS = {
    "send --lines 200 B QoS 0": {"raw": 1.5, "c": 0.5},
    "send --lines 200 B QoS 1": {"raw": 1.5},
    "listen backlog 256 B QoS 1": {"raw": 1.2, "c": 0.4},
}
#: The workloads also run through Mosquitto's own C clients, the ceiling.
CEILING = set(TARGETS)


def _spread(values: list[float]) -> list[float]:
    return [min(values), max(values)] if values else []


def throughput(bench: Bench, repeats: int, scale: float, only_targets: bool = False) -> tuple[list[dict], dict]:
    """Every workload through the connector (CLI and Python API) and raw paho, and the acceptance
    workloads also through Mosquitto's C clients; interleaved, the order alternating per repeat."""
    n = lambda count: max(10, int(count * scale))  # noqa: E731
    send_cases = [  # (name, qos, count, size)
        ("send --lines 200 B QoS 0", 0, n(50_000), 200),
        ("send --lines 200 B QoS 1", 1, n(20_000), 200),
        ("send 256 B QoS 0", 0, n(50_000), 256),
        ("send 256 B QoS 1", 1, n(20_000), 256),
        ("send 256 B QoS 2", 2, n(10_000), 256),
        ("send 64 KiB QoS 0", 0, n(10_000), 65_536),
        ("send 64 KiB QoS 1", 1, n(5_000), 65_536),
        ("send 64 KiB QoS 2", 2, n(5_000), 65_536),
    ]
    listen_cases = [
        ("listen backlog 256 B QoS 0", 0, n(20_000), 256),
        ("listen backlog 256 B QoS 1", 1, n(20_000), 256),
        ("listen backlog 256 B QoS 2", 2, n(10_000), 256),
        ("listen backlog 64 KiB QoS 1", 1, n(3_000), 65_536),
    ]
    if only_targets:
        send_cases = [c for c in send_cases if c[0] in TARGETS]
        listen_cases = [c for c in listen_cases if c[0] in TARGETS]
    samples: dict[tuple[str, str, str], list[float]] = {}
    fixed: dict[str, list[float]] = {"connector": [], "raw": []}

    def add(name: str, surface: str, impl: str, seconds: float) -> None:
        samples.setdefault((name, surface, impl), []).append(seconds)

    for r in range(repeats):
        for impl, seconds in bench.fixed_costs().items():
            fixed[impl].append(seconds)
        for name, qos, count, size in send_cases:
            for surface in ("cli", "api"):
                order = ["connector", "raw"] + (["c"] if surface == "cli" and name in CEILING else [])
                for impl in (order if r % 2 == 0 else order[::-1]):
                    run = bench.send_cli if surface == "cli" or impl == "c" else bench.send_api
                    add(name, surface, impl, run(impl, qos, count, size)["seconds"])
            print(f"  repeat {r + 1}/{repeats}: {name}", file=sys.stderr)
        for name, qos, count, size in listen_cases:
            who = ["cli", "api", "raw"] + (["c"] if name in CEILING else [])
            out = bench.listen_round(qos, count, size, who if r % 2 == 0 else who[::-1])
            add(name, "cli", "connector", out["cli"]["seconds"])
            add(name, "cli", "raw", out["raw"]["wall"])
            add(name, "api", "connector", out["api"]["seconds"])
            add(name, "api", "raw", out["raw"]["seconds"])
            if "c" in out:
                add(name, "cli", "c", out["c"]["seconds"])
            print(f"  repeat {r + 1}/{repeats}: {name}", file=sys.stderr)

    fixed_med = {impl: _median(v) for impl, v in fixed.items()}
    rows = []
    for name, qos, count, size in send_cases + listen_cases:
        # the C clients are processes: the Python API is compared with the same command-line runs
        c_runs = samples.get((name, "cli", "c"), [])
        for surface in ("cli", "api"):
            conn, raw = samples[(name, surface, "connector")], samples[(name, surface, "raw")]
            row = {"case": name, "surface": surface, "qos": qos, "count": count, "size": size,
                   "target": name in TARGETS, "targets": TARGETS.get(name, {}),
                   "connector_s": conn, "raw_s": raw,
                   "connector_msgs": count / _median(conn), "raw_msgs": count / _median(raw),
                   "connector_spread": [count / t for t in _spread(conn)[::-1]],
                   "raw_spread": [count / t for t in _spread(raw)[::-1]]}
            # each repeat's A and B ran back to back: the median of the paired ratios resists drift
            pairs = [r / c for c, r in zip(conn, raw)]
            row["ratio"], row["ratio_spread"] = _median(pairs), _spread(pairs)
            if c_runs:
                pairs = [c / k for k, c in zip(conn, c_runs)]
                row.update(c_s=c_runs, c_msgs=count / _median(c_runs), c_spread=[count / t for t in _spread(c_runs)[::-1]],
                           c_ratio=_median(pairs), c_ratio_spread=_spread(pairs))
            if surface == "cli":  # the same without process start, connect and disconnect
                c = _median(conn) - fixed_med["connector"]
                w = _median(raw) - fixed_med["raw"]
                row["net_connector_msgs"], row["net_raw_msgs"] = count / c, count / w
                row["net_ratio"] = w / c
            rows.append(row)
    return rows, fixed_med


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def brokers(benches: list[Bench], repeats: int, scale: float) -> list[dict]:
    """The embedded broker against Mosquitto: the connector's CLI and raw paho through each, the
    brokers' order alternating per repeat; with each broker's CPU time per message (/proc)."""
    n = lambda count: max(10, int(count * scale))  # noqa: E731
    cases = [("send --lines 200 B QoS 0", "send", 0, n(20_000), 200), ("send --lines 200 B QoS 1", "send", 1, n(5_000), 200),
             ("listen backlog 256 B QoS 1", "listen", 1, n(5_000), 256)]
    samples: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for r in range(repeats):
        for bench in (benches if r % 2 == 0 else benches[::-1]):
            pid = bench.broker.proc.pid  # type: ignore[union-attr]
            for name, kind, qos, count, size in cases:
                cpu0 = _cpu_seconds(pid)
                if kind == "send":
                    for impl in ("connector", "raw") if r % 2 == 0 else ("raw", "connector"):
                        samples.setdefault((name, impl, bench.broker.name), []).append(
                            bench.send_cli(impl, qos, count, size)["seconds"])
                    messages = 2 * count
                else:
                    out = bench.listen_round(qos, count, size, ["cli", "raw"] if r % 2 == 0 else ["raw", "cli"])
                    samples.setdefault((name, "connector", bench.broker.name), []).append(out["cli"]["seconds"])
                    samples.setdefault((name, "raw", bench.broker.name), []).append(out["raw"]["wall"])
                    messages = 3 * count  # the backlog published once, delivered to both
                cpu.setdefault((name, bench.broker.name), []).append((_cpu_seconds(pid) - cpu0) / messages)
            print(f"  repeat {r + 1}/{repeats}: {bench.broker.name}", file=sys.stderr)
    rows = []
    for name, _kind, _qos, count, _size in cases:
        for impl in ("connector", "raw"):
            m, e = samples[(name, impl, "mosquitto")], samples[(name, impl, "embedded")]
            rows.append({"case": name, "impl": impl, "count": count, "mosquitto_s": m, "embedded_s": e,
                         "mosquitto_msgs": count / _median(m), "embedded_msgs": count / _median(e),
                         "ratio": _median([a / b for a, b in zip(m, e)]),
                         "mosquitto_cpu_us": _median(cpu[(name, "mosquitto")]) * 1e6,
                         "embedded_cpu_us": _median(cpu[(name, "embedded")]) * 1e6})
    return rows


def latency(bench: Bench, repeats: int, seconds: float) -> list[dict]:
    rows = []
    for qos in (0, 1):
        for r in range(repeats):
            for impl in (["api", "raw"] if r % 2 == 0 else ["raw", "api"]):
                data = bench.worker("latency", "--impl", impl, "--qos", qos, "--rate", 1000, "--seconds", seconds,
                                    "--topic", f"bench/lat/{bench.seq}")
                rows.append({"impl": "connector" if impl == "api" else "raw", "qos": qos, **data})
    return rows


def window_sweep(bench: Bench, repeats: int, scale: float) -> list[dict]:
    """The Python API's Send at QoS 1 with in-flight windows around the default."""
    count = max(10, int(20_000 * scale))
    samples: dict[int, list[float]] = {}
    for r in range(repeats):
        for window in ((20, 100, 1000) if r % 2 == 0 else (1000, 100, 20)):
            data = bench.worker("api-send", "--qos", 1, "--count", count, "--size", 256, "--window", window)
            samples.setdefault(window, []).append(data["seconds"])
    return [{"window": w, "count": count, "msgs": count / _median(v), "seconds": v} for w, v in sorted(samples.items())]


def peak_rss(bench: Bench, count: int) -> dict:
    """Peak RSS (ru_maxrss of the finished child) of a CLI Send and a CLI Listen of ``count`` QoS 0
    documents running together."""
    from bench.workers import payloads

    topic = f"bench/rss/{count}"
    listen = subprocess.Popen([*CLI, "listen", "--topic", topic, "--qos", "0", "--count", str(count), "--timeout",
                               str(max(30, count / 5000)), "--port", str(bench.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    time.sleep(1.0)  # its subscription is in place well before (a connect takes milliseconds)
    send = subprocess.Popen([*CLI, "send", "--topic", topic, "--qos", "0", "--lines", "--port", str(bench.port)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)

    def feed() -> None:
        assert send.stdin is not None
        block: list[bytes] = []
        for payload in payloads(count, 200):
            block.append(payload + b"\n")
            if len(block) == 5000:
                send.stdin.write(b"".join(block))
                block = []
        send.stdin.write(b"".join(block))
        send.stdin.close()

    t0 = time.perf_counter()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    _, send_status, send_usage = os.wait4(send.pid, 0)
    send.returncode = os.waitstatus_to_exitcode(send_status)
    send_seconds = time.perf_counter() - t0
    _, listen_status, listen_usage = os.wait4(listen.pid, 0)
    listen.returncode = os.waitstatus_to_exitcode(listen_status)
    err = listen.stderr.read().decode(errors="replace") if listen.stderr else ""
    return {"count": count, "send_peak_rss_mb": send_usage.ru_maxrss / 1024,
            "listen_peak_rss_mb": listen_usage.ru_maxrss / 1024, "send_seconds": send_seconds,
            "send_exit": send.returncode, "listen_exit": listen.returncode, "listen_stderr": err[-300:]}


def help_time(runs: int) -> dict:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([*CLI, "--help"], stdout=subprocess.DEVNULL, check=True, env=ENV)
        times.append(time.perf_counter() - t0)
    bare = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t0)
    return {"median_s": _median(times), "max_s": max(times), "python_alone_median_s": _median(bare)}


def profiles(bench: Bench, scale: float) -> list[dict]:
    pid = bench.broker.proc.pid if bench.broker.proc else None
    out = []
    n = lambda count: max(10, int(count * scale))  # noqa: E731
    for mode, qos, count in (("api-send", 0, n(50_000)), ("raw-send", 0, n(50_000)),
                             ("api-send", 1, n(20_000)), ("raw-send", 1, n(20_000))):
        out.append(_profile(bench, [mode, "--qos", qos, "--count", count, "--size", 256], pid))
    for mode in ("api-listen", "raw-listen"):
        client_id, topic = f"bench-prof-{mode}-{os.getpid()}", f"bench/prof/{mode}"
        bench.worker("session", "--client-id", client_id, "--qos", 1, "--topic", topic)
        bench.worker("raw-send", "--qos", 1, "--count", n(20_000), "--size", 256, "--topic", topic)
        out.append(_profile(bench, [mode, "--qos", 1, "--count", n(20_000), "--client-id", client_id, "--topic", topic],
                            pid))
    return out


def _profile(bench: Bench, args: list[object], broker_pid: int | None) -> dict:
    cmd = [PY, "-m", "bench.profile", *map(str, args), "--port", str(bench.port)]
    if broker_pid:
        cmd += ["--broker-pid", str(broker_pid)]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, timeout=300)
    lines = [line for line in proc.stderr.decode().splitlines() if line.startswith('{"mode"')]
    if not lines:
        raise RuntimeError(f"profile failed: {proc.stderr.decode()[-2000:]}")
    data = json.loads(lines[-1])
    data["qos"] = int(args[2])
    return data


# -- output ------------------------------------------------------------------------------------

def table(results: dict) -> str:
    out = [f"{'case':<30} {'via':<4} {'connector msg/s':>16} {'raw paho msg/s':>15} {'ratio':>6} {'net ratio':>9} "
           f"{'C msg/s':>9} {'/ C':>5}"]
    for row in results["throughput"]:
        net = f"{row['net_ratio']:.2f}" if "net_ratio" in row else ""
        c_msgs, c_ratio = (f"{row['c_msgs']:,.0f}", f"{row['c_ratio']:.2f}") if "c_msgs" in row else ("", "")
        flag = " *" if row["target"] else ""
        out.append(f"{row['case']:<30} {row['surface']:<4} {row['connector_msgs']:>16,.0f} {row['raw_msgs']:>15,.0f} "
                   f"{row['ratio']:>6.2f} {net:>9} {c_msgs:>9} {c_ratio:>5}{flag}")
    out.append("* acceptance workload; ratio: connector / raw paho; net ratio: the CLI without process start-up and "
               "connect; C: mosquitto_pub -l / mosquitto_sub -F %j, and the connector / C")
    out.append("")
    for row in results.get("brokers", []):
        out.append(f"{row['case']:<30} {row['impl']:<9} Mosquitto {row['mosquitto_msgs']:>9,.0f}/s, embedded "
                   f"{row['embedded_msgs']:>8,.0f}/s: {row['ratio']:.2f}; broker CPU {row['mosquitto_cpu_us']:.0f} / "
                   f"{row['embedded_cpu_us']:.0f} µs/msg")
    if results.get("brokers"):
        out.append("")
    for qos in (0, 1):
        for impl in ("connector", "raw"):
            rows = [r for r in results["latency"] if r["impl"] == impl and r["qos"] == qos]
            if rows:
                out.append(f"latency QoS {qos} at 1,000 msg/s, {impl:<9}: p50 {_median([r['p50_ms'] for r in rows]):.2f} ms, "
                           f"p99 {_median([r['p99_ms'] for r in rows]):.2f} ms (median of {len(rows)} runs)")
    rss = results.get("rss")
    if rss:
        big, small = rss["big"], rss["small"]
        out.append(f"peak RSS send --lines: {small['send_peak_rss_mb']:.1f} MB ({small['count']:,} docs) -> "
                   f"{big['send_peak_rss_mb']:.1f} MB ({big['count']:,} docs): growth {rss['send_growth_mb']:.1f} MB")
        out.append(f"peak RSS listen:       {small['listen_peak_rss_mb']:.1f} MB -> {big['listen_peak_rss_mb']:.1f} MB: "
                   f"growth {rss['listen_growth_mb']:.1f} MB")
    h = results["help"]
    out.append(f"mqtt-connector --help: median {h['median_s'] * 1000:.0f} ms, max {h['max_s'] * 1000:.0f} ms "
               f"(python -c pass: {h['python_alone_median_s'] * 1000:.0f} ms)")
    out.append("")
    if results.get("scale"):
        from bench import scale

        out += scale.table(results)
    if results["quick"]:
        out.append("--quick: a tenth of the acceptance workloads, one repeat, so start-up dominates; the targets "
                   "are for the full run")
    for what, got, ok in targets(results):
        out.append(f"{'met ' if ok else 'MISS'} {what}: {got}")
    load = results["machine"]
    out.append(f"load average before/after: {load['load_before']} / {load['load_after']}; seconds per part: "
               f"{results.get('part_seconds')}")
    return "\n".join(out)


def _row(results: dict, case: str, surface: str) -> dict | None:
    return next((r for r in results["throughput"] if r["case"] == case and r["surface"] == surface), None)


def targets(results: dict) -> list[tuple[str, str, bool | None]]:
    """The issue's acceptance targets ("what it must show"): (what, measured, met)."""
    out: list[tuple[str, str, bool | None]] = []
    names = {"raw": "raw paho", "c": "Mosquitto's C client"}
    for case, wanted in TARGETS.items():
        for surface in ("cli", "api"):
            row = _row(results, case, surface)
            if row is None:
                continue
            for against, least in wanted.items():
                key = "ratio" if against == "raw" else "c_ratio"
                if key not in row:
                    continue
                spread = row[f"{key}_spread"]
                via = "CLI" if surface == "cli" else "Python API"
                out.append((f"{case}, {via}: >= {least} x {names[against]}",
                            f"{row[key]:.2f} ({spread[0]:.2f}-{spread[1]:.2f})", row[key] >= least))
    p99 = {impl: _median([r["p99_ms"] for r in results["latency"] if r["impl"] == impl and r["qos"] == 1])
           for impl in ("connector", "raw")}
    if results["latency"]:
        out.append(("p99 latency at 1,000 msg/s QoS 1 <= raw paho's + 0.5 ms",
                    f"{p99['connector']:.2f} ms (raw {p99['raw']:.2f} ms)", p99["connector"] <= p99["raw"] + 0.5))
    rss = results.get("rss")
    if rss:
        grow = max(rss["send_growth_mb"], rss["listen_growth_mb"])
        out.append((f"RSS growth over {rss['big']['count']:,} documents < 30 MB",
                    f"send {rss['send_growth_mb']:.1f} MB, listen {rss['listen_growth_mb']:.1f} MB", grow < 30))
    h = results["help"]
    out.append(("mqtt-connector --help < 0.1 s", f"{h['median_s'] * 1000:.0f} ms (max {h['max_s'] * 1000:.0f})",
                h["median_s"] < 0.1))
    return out


def markdown(results: dict) -> str:
    """The results as the Markdown that docs/performance.md shows between its markers."""
    m = results["machine"]
    out = [f"Run {m['started']}{' (--quick: a tenth of the messages)' if results['quick'] else ''}: "
           f"{m['cpus']} CPUs, Python {m['python']}, paho-mqtt {m['paho_mqtt']}, {m['mosquitto']}; "
           f"{results['repeats']} interleaved A/B repeats, medians; load average before {m['load_before']}, "
           f"after {m['load_after']}.", ""]
    out += ["| target | measured | met |", "|---|---|---|"]
    out += [f"| {what} | {got} | {'yes' if ok else 'NO'} |" for what, got, ok in targets(results)]
    out.append("")
    if results["throughput"]:
        out += ["| workload | via | messages | connector msg/s | raw paho msg/s | Mosquitto C client msg/s | "
                "connector / raw | net | connector / C |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

        def spread(row: dict, key: str) -> str:
            low, high = row[f"{key}_spread"]
            fmt = "{:.2f}" if key.endswith("ratio") else "{:,.0f}"
            value = row[key if key.endswith("ratio") else f"{key}_msgs"]
            return f"{fmt.format(value)} ({fmt.format(low)}-{fmt.format(high)})"

        for row in results["throughput"]:
            net = f"{row['net_ratio']:.2f}" if "net_ratio" in row else ""
            name = f"**{row['case']}**" if row["target"] else row["case"]
            c_msgs = spread(row, "c") if "c_msgs" in row else ""
            c_ratio = spread(row, "c_ratio") if "c_ratio" in row else ""
            out.append(f"| {name} | {row['surface']} | {row['count']:,} | {spread(row, 'connector')} | "
                       f"{spread(row, 'raw')} | {c_msgs} | {spread(row, 'ratio')} | {net} | {c_ratio} |")
        fixed = results.get("fixed_cost_s", {})
        out += ["", "Medians, and in brackets the spread (lowest-highest) of the repeats; each ratio is the median "
                "of the per-repeat ratios (the two ran back to back). Bold: the acceptance workloads. *Mosquitto C "
                "client*: `mosquitto_pub -l` (standard input's lines) and `mosquitto_sub -F %j` draining the same "
                "persistent backlog (`-c -i ID -C N`), the whole process; the Python API row compares "
                "the API with the same runs. *cli*: the whole command, process start "
                "included, against a raw paho script reading the same standard input or writing the same JSON lines; "
                "*net ratio*: the same without the fixed cost of one run (start-up, connect, disconnect: "
                f"connector {fixed.get('connector', 0) * 1000:.0f} ms, raw {fixed.get('raw', 0) * 1000:.0f} ms, "
                "measured as a one-document run). *api*: the Python API (`Runtime.send` / `Runtime.listen` with the "
                "JSON-lines sink) against raw paho in a process of its own, timed from the call (connect included) "
                "to the last result.", ""]
    if results.get("brokers"):
        out += ["The embedded broker (`mqtt-connector broker`, amqtt) against Mosquitto, the same command-line "
                "runs through each (the brokers' order alternating per repeat); broker CPU: its CPU time per "
                "message it took in or handed out (`/proc`).", "",
                "| workload | client | messages | Mosquitto msg/s | embedded msg/s | embedded / Mosquitto | "
                "broker CPU µs/msg Mosquitto | embedded |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in results["brokers"]:
            out.append(f"| {row['case']} | {'connector CLI' if row['impl'] == 'connector' else 'raw paho'} | "
                       f"{row['count']:,} | {row['mosquitto_msgs']:,.0f} | {row['embedded_msgs']:,.0f} | "
                       f"{row['ratio']:.2f} | {row['mosquitto_cpu_us']:.0f} | {row['embedded_cpu_us']:.0f} |")
        out.append("")
    if results.get("window"):
        out += ["In-flight window (Python API, Send QoS 1, 256 B): " + ", ".join(
            f"{w['window']}: {w['msgs']:,.0f} msg/s" for w in results["window"]) + ".", ""]
    if results["latency"]:
        out += ["| latency at 1,000 msg/s | connector p50 | connector p99 | raw p50 | raw p99 |", "|---|---:|---:|---:|---:|"]
        for qos in (0, 1):
            vals = {}
            for impl in ("connector", "raw"):
                rows = [r for r in results["latency"] if r["impl"] == impl and r["qos"] == qos]
                vals[impl] = (_median([r["p50_ms"] for r in rows]), _median([r["p99_ms"] for r in rows]))
            out.append(f"| QoS {qos} | {vals['connector'][0]:.2f} ms | {vals['connector'][1]:.2f} ms | "
                       f"{vals['raw'][0]:.2f} ms | {vals['raw'][1]:.2f} ms |")
        out.append("")
    rss = results.get("rss")
    if rss:
        small, big = rss["small"], rss["big"]
        out += [f"Peak RSS (CLI, QoS 0, 200 B lines, Send and Listen running together): `send --lines` "
                f"{small['send_peak_rss_mb']:.1f} MB for {small['count']:,} documents, {big['send_peak_rss_mb']:.1f} MB "
                f"for {big['count']:,}: growth **{rss['send_growth_mb']:.1f} MB**; `listen` "
                f"{small['listen_peak_rss_mb']:.1f} MB and {big['listen_peak_rss_mb']:.1f} MB: growth "
                f"**{rss['listen_growth_mb']:.1f} MB** (Send took {big['send_seconds']:.1f} s).", ""]
    h = results["help"]
    out += [f"`mqtt-connector --help`: median **{h['median_s'] * 1000:.0f} ms**, max {h['max_s'] * 1000:.0f} ms "
            f"(`python -c pass`: {h['python_alone_median_s'] * 1000:.0f} ms).", ""]
    if results.get("profile"):
        out += ["| profile | process CPU µs/msg | broker CPU µs/msg | where the process's busy time goes |",
                "|---|---:|---:|---|"]
        for prof in results["profile"]:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in prof["busy_share"].items() if v >= 0.01)
            broker = f"{prof['broker_cpu_us_per_msg']:.1f}" if prof.get("broker_cpu_us_per_msg") is not None else "?"
            out.append(f"| {prof['mode']} QoS {prof['qos']} ({prof['count']:,}) | {prof['process_cpu_us_per_msg']:.1f} | "
                       f"{broker} | {shares} |")
        out.append("")
    return "\n".join(out)


def update_doc(doc: Path, text: str, section: str = "results") -> bool:
    """Replace the text between ``<!-- bench:SECTION:start -->`` and its end mark in ``doc``."""
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    if not doc.exists():
        return False
    content = doc.read_text()
    if start not in content or end not in content:
        return False
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    return True


def chart(results: dict, path: Path) -> bool:
    """docs/bench.png: messages/s of the connector, raw paho and Mosquitto's C clients (the ceiling),
    and the ratios against each target; False when matplotlib (the ``bench`` extra) is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["throughput"]
    labels = [f"{r['case']} ({r['surface']})" for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 0.36 * len(rows) + 2), sharey=True)
    y = list(range(len(rows)))
    ax1.barh([i - 0.27 for i in y], [r["connector_msgs"] for r in rows], height=0.27, label="connector")
    ax1.barh(y, [r["raw_msgs"] for r in rows], height=0.27, label="raw paho-mqtt")
    ceiling = [(i, r["c_msgs"]) for i, r in zip(y, rows) if "c_msgs" in r]
    if ceiling:
        ax1.barh([i + 0.27 for i, _ in ceiling], [v for _, v in ceiling], height=0.27, color="dimgrey",
                 label="Mosquitto's C clients (ceiling)")
    ax1.set_xscale("log")
    ax1.set_xlabel("messages/s (log)")
    ax1.set_yticks(y, labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.legend(loc="lower right", fontsize=8)
    ax2.barh([i - 0.2 for i in y], [r["ratio"] for r in rows], height=0.4, color="tab:blue", label="connector / raw paho")
    if ceiling:
        ax2.barh([i + 0.2 for i, r in zip(y, rows) if "c_ratio" in r], [r["c_ratio"] for r in rows if "c_ratio" in r],
                 height=0.4, color="dimgrey", label="connector / C client")
    for i, r in zip(y, rows):  # each acceptance workload's targets
        for against, least in r.get("targets", {}).items():
            offset = -0.2 if against == "raw" else 0.2
            ax2.plot([least, least], [i + offset - 0.2, i + offset + 0.2], color="red", linewidth=2)
    ax2.plot([], [], color="red", linewidth=2, label="target")
    ax2.axvline(1.0, color="grey", linewidth=0.8)
    ax2.set_xlabel("ratio (higher is better)")
    ax2.legend(loc="lower right", fontsize=8)
    load = results["machine"]
    fig.suptitle(f"MQTT connector vs raw paho-mqtt and Mosquitto's C clients, through Mosquitto "
                 f"({load['cpus']} CPUs, load {load['load_before'][0]:.2f}, {results['repeats']} repeats, medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run under a minute: the acceptance workloads at a tenth, one repeat, every part "
                        "small; writes into a temporary folder unless --out is given")
    p.add_argument("--repeats", type=int, help="A/B repeats per workload (default 5; --quick 1)")
    p.add_argument("--out", help="where bench-results.json, bench-results.md and bench.png go (default docs/, "
                                 "which also updates docs/performance.md)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["throughput", "brokers", "latency", "rss", "profile", "scale"],
                   help="leave a part out (repeatable)")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    scale = 0.1 if args.quick else 1.0
    if args.out is not None:
        out = Path(args.out)
    elif args.quick:  # a smoke run never replaces the published results unless asked
        out = Path(tempfile.mkdtemp(prefix="mqtt-bench-quick-"))
    else:
        out = ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    precompile()
    results = measure(args.skip, repeats, scale, args.quick)
    (out / "bench-results.json").write_text(json.dumps(results, indent=1) + "\n")
    drawn = bool(results["throughput"]) and chart(results, out / "bench.png")
    (out / "bench-results.md").write_text(markdown(results) + "\n")
    if out.resolve() == (ROOT / "docs").resolve() and update_doc(ROOT / "docs" / "performance.md", markdown(results)):
        print("updated the results in docs/performance.md", file=sys.stderr)
    if results.get("scale"):
        from bench import scale

        scale.write({k: results[k] for k in ("quick", "machine", "scale")} | {"repeats": results["scale_repeats"]}, out)
    print(table(results))
    print(f"\nwrote {out / 'bench-results.json'}, {out / 'bench-results.md'}" + (f" and {out / 'bench.png'}" if drawn else
          " (no chart: pip install -e '.[bench]' for matplotlib)" if results["throughput"] else ""))
    return 0


def precompile() -> None:
    """Compile the connector's and the bench's modules to bytecode first, as installing a wheel does:
    with ``PYTHONDONTWRITEBYTECODE=1`` (set on many machines) a source checkout is otherwise
    compiled again at every start of every command and worker (about 0.1 to 0.2 s of each CLI run)."""
    import compileall

    for folder in ("connector", "bench", "examples"):
        compileall.compile_dir(str(ROOT / folder), quiet=1)


def _part(results: dict, name: str, t0: float) -> None:
    results.setdefault("part_seconds", {})[name] = round(time.perf_counter() - t0, 1)


def machine() -> dict:
    """What the results were measured on, and the load average before."""
    from importlib.metadata import version

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_before": [round(x, 2) for x in os.getloadavg()], "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "paho_mqtt": version("paho-mqtt")}


def measure(skip: list[str], repeats: int, scale: float, quick: bool) -> dict:
    """Every part not in ``skip``, through a Mosquitto of its own (and the embedded broker for the
    broker comparison), both stopped at the end."""
    results: dict = {"quick": quick, "repeats": repeats, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp).start()
        try:
            results["machine"]["mosquitto"] = broker.version()
            bench = Bench(broker, tmp, quick)
            results["help"] = help_time(5 if quick else 20)
            t0 = time.perf_counter()
            if "throughput" not in skip:
                print("throughput (A/B interleaved)...", file=sys.stderr)
                results["throughput"], results["fixed_cost_s"] = throughput(bench, repeats, scale, only_targets=quick)
                print("in-flight window sweep...", file=sys.stderr)
                results["window"] = window_sweep(bench, repeats, scale / 5 if quick else scale)
            _part(results, "throughput", t0)
            t0 = time.perf_counter()
            if "brokers" not in skip:
                print("the embedded broker against Mosquitto...", file=sys.stderr)
                embedded = Embedded(tmp).start()
                try:
                    results["brokers"] = brokers([bench, Bench(embedded, tmp, quick)], repeats, scale)
                finally:
                    embedded.stop()
            _part(results, "brokers", t0)
            t0 = time.perf_counter()
            if "latency" not in skip:
                print("latency at 1,000 msg/s...", file=sys.stderr)
                results["latency"] = latency(bench, repeats, 1.0 if quick else 5.0)
            _part(results, "latency", t0)
            t0 = time.perf_counter()
            if "rss" not in skip:
                print("peak RSS...", file=sys.stderr)
                big = 20_000 if quick else 1_000_000
                small, large = peak_rss(bench, 1_000), peak_rss(bench, big)
                results["rss"] = {"small": small, "big": large,
                                  "send_growth_mb": large["send_peak_rss_mb"] - small["send_peak_rss_mb"],
                                  "listen_growth_mb": large["listen_peak_rss_mb"] - small["listen_peak_rss_mb"]}
            _part(results, "rss", t0)
            t0 = time.perf_counter()
            if "profile" not in skip:
                print("profiles...", file=sys.stderr)
                results["profile"] = profiles(bench, scale / 5 if quick else scale)
            _part(results, "profile", t0)
            t0 = time.perf_counter()
            if "scale" not in skip:
                from bench import scale

                print("scale: shared groups, many filters...", file=sys.stderr)
                results["scale_repeats"] = 1 if quick else 3
                results["scale"] = scale.measure(bench, tmp, results["scale_repeats"], quick)
            _part(results, "scale", t0)
        finally:
            broker.stop()
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results.setdefault("throughput", [])
    results.setdefault("latency", [])
    return results


if __name__ == "__main__":
    if __package__ in (None, ""):  # python bench/run.py
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
