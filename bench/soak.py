"""``python -m bench.soak``: a soak test of Send and Listen through broker restarts and connection cuts.

On a Mosquitto of its own (a free port, persistence on, no limit on queued messages), it sends N
sequence-numbered messages with ``mqtt-connector send --lines`` (in chunks; a chunk whose Send exits
non-zero is run again for the documents it did not report SUCCESS, as the contract allows) to one
``mqtt-connector listen --persistent --client-id soak-listen`` writing JSON lines to a file, while a
fault thread alternates, every ``--period`` seconds, a Mosquitto restart (SIGTERM to its pid, down
for ``--down`` seconds, started again on the same port with the same persistence folder) and a cut
of every connection by a FaultProxy (tests/faultproxy.py) that sits between the clients and Mosquitto.

At the end (the listener reached N distinct messages, or was quiet for ``--quiet`` seconds, or
``--seconds`` passed) it prints what happened and exits 0 only when nothing was lost (and, for QoS 2,
nothing was duplicated). It reports what it sees; it does not hide a loss by retrying more.

    python -m bench.soak --messages 5000 --qos 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # MosquittoBroker and FaultProxy live with the tests

from brokers import stop_process  # noqa: E402

TOPIC = "soak/t"
CLIENT_ID = "soak-listen"
CONNECTOR = [sys.executable, "-m", "connector"]
FEED_TICK = 0.02  # seconds between two writes to a Send's standard input when the feed is paced


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Figures:
    restarts: int = 0
    restart_failures: int = 0
    cut_rounds: int = 0
    connections_cut: int = 0
    send_runs: int = 0
    send_reruns: int = 0
    resent_documents: int = 0
    send_exit_codes: dict[int, int] = field(default_factory=dict)
    unconfirmed: int = 0  # documents never reported SUCCESS when the sending stopped
    listener_restarts: int = 0
    listener_exit_codes: list[int] = field(default_factory=list)
    timed_out: bool = False


class Output:
    """Reads the listener's JSON lines as they grow: the sequence numbers received, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.received: list[int] = []
        self.distinct: set[int] = set()
        self.flagged_duplicate = 0  # lines whose properties say duplicate: true
        self.probes = 0
        self.other = 0

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                payload = doc["payload"]
            except (ValueError, KeyError, TypeError):
                self.other += 1
                continue
            if payload.startswith("probe"):
                self.probes += 1
                continue
            try:
                seq = int(payload)
            except ValueError:
                self.other += 1
                continue
            self.received.append(seq)
            self.distinct.add(seq)
            if doc.get("properties", {}).get("duplicate"):
                self.flagged_duplicate += 1
        return len(lines)


class Listener:
    """The one ``mqtt-connector listen --persistent`` process; started again if it ends by itself."""

    def __init__(self, port: int, qos: int, out: Path, err: Path, figures: Figures) -> None:
        self.args = [*CONNECTOR, "listen", "--host", "127.0.0.1", "--port", str(port), "--persistent",
                     "--client-id", CLIENT_ID, "--qos", str(qos), "--topic", TOPIC]
        self.out, self.err, self.figures = out, err, figures
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        with open(self.out, "ab") as out, open(self.err, "ab") as err:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def check(self) -> None:
        """Start it again when it ended by itself (counted: a Listen should ride out the faults)."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                self.figures.listener_exit_codes.append(code)
                self.figures.listener_restarts += 1
                log(f"the listener exited by itself with {code}; starting it again")
                self.start()

    def stop(self) -> None:
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)


def fault_loop(stop: threading.Event, broker, proxy, period: float, down: float, figures: Figures) -> None:
    """Every ``period`` seconds (a fixed clock, whatever a restart takes): a broker restart, then a
    cut, then a restart, ..."""
    restart_next = True
    next_fault = time.monotonic() + period
    while not stop.wait(max(0.0, next_fault - time.monotonic())):
        next_fault = max(next_fault + period, time.monotonic())
        if restart_next:
            log(f"fault: restarting Mosquitto (down {down:g} s)")
            broker.stop()
            stop.wait(down)  # down for that long even when stopping: then it comes back below
            try:
                broker.start()
                figures.restarts += 1
            except RuntimeError as exc:
                figures.restart_failures += 1
                log(f"Mosquitto did not come back: {exc}; trying again")
                try:
                    broker.start()
                    figures.restarts += 1
                except RuntimeError as exc2:
                    log(f"Mosquitto did not come back again: {exc2}")
                    raise
        else:
            cut = proxy.cut()
            figures.cut_rounds += 1
            figures.connections_cut += cut
            log(f"fault: cut {cut} connection(s)")
        restart_next = not restart_next


def wait_subscribed(port: int, output: Output, listener: Listener, deadline: float) -> bool:
    """Sends QoS 1 probes until the listener writes one: its subscription is in place end to end."""
    while time.monotonic() < deadline:
        subprocess.run([*CONNECTOR, "send", "--host", "127.0.0.1", "--port", str(port), "--topic", TOPIC,
                        "--qos", "1", "--message", "probe"], capture_output=True, timeout=60)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            output.poll()
            if output.probes:
                return True
            listener.check()
            time.sleep(0.1)
    return False


def send_chunk(seqs: list[int], port: int, qos: int, rate: float, work: Path, number: int, figures: Figures,
               listener: Listener, deadline: float) -> list[int]:
    """Sends ``seqs`` until each was reported SUCCESS (or the deadline); returns those never confirmed."""
    pending = seqs
    run = 0
    while pending and time.monotonic() < deadline:
        results = work / f"results-{number}-{run}.jsonl"
        err = work / f"send-{number}-{run}.err"
        if run:
            figures.send_reruns += 1
            figures.resent_documents += len(pending)
            log(f"chunk {number}: re-run {run} for {len(pending)} unconfirmed document(s)")
        figures.send_runs += 1
        with open(err, "wb") as errf:
            proc = subprocess.Popen([*CONNECTOR, "send", "--host", "127.0.0.1", "--port", str(port), "--topic", TOPIC,
                                     "--qos", str(qos), "--lines", "--results", str(results),
                                     # a persistent session keeps QoS 2 exactly once across reconnects
                                     "--persistent", "--client-id", f"soak-send-{number}"],
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf)
            feeder = threading.Thread(target=_feed, args=(proc, pending, rate), daemon=True)
            feeder.start()
            while proc.poll() is None:
                listener.check()
                if time.monotonic() > deadline:
                    log(f"chunk {number}: --seconds reached; stopping its Send")
                    stop_process(proc)
                    break
                try:
                    proc.wait(0.5)
                except subprocess.TimeoutExpired:
                    pass
            feeder.join(10)
        code = proc.returncode
        figures.send_exit_codes[code] = figures.send_exit_codes.get(code, 0) + 1
        confirmed: set[int] = set()
        if results.exists():
            for line in results.read_text().splitlines():
                try:
                    result = json.loads(line)
                except ValueError:
                    continue
                if result.get("status") == "SUCCESS":
                    confirmed.add(result["index"])
        unconfirmed = [seq for i, seq in enumerate(pending) if i not in confirmed]
        if code != 0 or unconfirmed:
            tail = err.read_text(errors="replace").strip().splitlines()[-1:] if err.exists() else []
            log(f"chunk {number}: Send exited {code}, {len(pending) - len(unconfirmed)} of {len(pending)} "
                f"confirmed{': ' + tail[0] if tail else ''}")
            if code == 0 and unconfirmed:
                log(f"chunk {number}: ODD: exit 0 but {len(unconfirmed)} document(s) without a SUCCESS result")
        if code == 0 and not unconfirmed:
            return []
        pending = unconfirmed if code != 0 or unconfirmed else []
        run += 1
        if pending:
            time.sleep(0.5)  # a moment before the re-run (the broker may be restarting)
    return pending


def _feed(proc: subprocess.Popen, seqs: list[int], rate: float) -> None:
    """Writes the sequence numbers to the Send's standard input, ``rate`` lines per second (0: at once)."""
    assert proc.stdin is not None
    try:
        if rate <= 0:
            proc.stdin.write(("\n".join(map(str, seqs)) + "\n").encode())
        else:
            start, step = time.monotonic(), max(1, int(rate * FEED_TICK))
            for i in range(0, len(seqs), step):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the feed
                proc.stdin.write(("\n".join(map(str, seqs[i:i + step])) + "\n").encode())
                proc.stdin.flush()
                if proc.poll() is not None:
                    break
        proc.stdin.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # it ended early; its exit code and results say what was sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--chunks", type=int, default=5, help="Sends the messages are split into (default 5)")
    parser.add_argument("--period", type=float, default=3.0, help="seconds between faults (default 3)")
    parser.add_argument("--down", type=float, default=1.0, help="seconds Mosquitto stays down at a restart (default 1)")
    parser.add_argument("--rate", type=float, default=500.0,
                        help="messages per second fed to the Sends (default 500, so that the sending lasts "
                             "through several faults; 0: as fast as they go)")
    parser.add_argument("--seconds", type=float, default=900.0, help="the most the whole soak may take (default 900)")
    parser.add_argument("--quiet", type=float, default=20.0,
                        help="at the end, stop waiting once the listener wrote nothing for this long (default 20)")
    parser.add_argument("--no-faults", action="store_true", help="no restarts, no cuts (a baseline)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, outputs)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.chunks < 1 or args.period <= 0 or args.down < 0:
        parser.error("--messages and --chunks must be at least 1, --period positive, --down not negative")

    if shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])) is None:
        print("error: mosquitto is not installed (Debian package mosquitto)", file=sys.stderr)
        return 2
    from brokers import MosquittoBroker
    from faultproxy import FaultProxy

    work = Path(tempfile.mkdtemp(prefix="mqtt-soak-"))
    figures = Figures()
    out = work / "listen.jsonl"
    output = Output(out)
    stop_faults = threading.Event()
    fault_thread: threading.Thread | None = None
    broker = proxy = listener = None
    started = time.monotonic()
    deadline = started + args.seconds
    try:
        broker = MosquittoBroker(work / "mosquitto", persistence=True,
                                 extra="max_queued_messages 0\nmax_queued_bytes 0").start()
        proxy = FaultProxy(broker.host, broker.port).start()
        log(f"Mosquitto on {broker.port} (persistence in {broker.folder / 'data'}), FaultProxy on {proxy.port}; "
            f"working folder {work}")
        listener = Listener(proxy.port, args.qos, out, work / "listen.err", figures)
        listener.start()
        if not wait_subscribed(proxy.port, output, listener, min(deadline, time.monotonic() + 60)):
            log("the listener never received a probe: is it subscribed?")
            figures.timed_out = True
            return report(args, figures, output, time.monotonic() - started, work)

        if not args.no_faults:
            fault_thread = threading.Thread(target=fault_loop, name="faults", daemon=True,
                                            args=(stop_faults, broker, proxy, args.period, args.down, figures))
            fault_thread.start()
        sending_started = time.monotonic()
        seqs = list(range(args.messages))
        size = -(-len(seqs) // args.chunks)
        for number, first in enumerate(range(0, len(seqs), size)):
            left = send_chunk(seqs[first:first + size], proxy.port, args.qos, args.rate, work, number, figures, listener, deadline)
            figures.unconfirmed += len(left)
            output.poll()
            log(f"chunk {number} done; the listener has {len(output.distinct)} distinct so far")
        log(f"sending done in {time.monotonic() - sending_started:.1f} s; stopping the faults")
        stop_faults.set()
        if fault_thread is not None:
            fault_thread.join(60)
        if broker.proc is None:  # stopped by a restart that did not complete
            broker.start()

        # wait for the listener: N distinct, or quiet for --quiet seconds, or the deadline
        last_count, last_change = -1, time.monotonic()
        while len(output.distinct) < args.messages:
            output.poll()
            listener.check()
            now = time.monotonic()
            if len(output.received) != last_count:
                last_count, last_change = len(output.received), now
            if now - last_change > args.quiet:
                log(f"the listener wrote nothing for {args.quiet:g} s; stopping the wait")
                break
            if now > deadline:
                log("--seconds reached while waiting for the listener")
                figures.timed_out = True
                break
            time.sleep(0.2)
        listener.stop()  # SIGTERM: it acknowledges only what it wrote
        output.poll()
        return report(args, figures, output, time.monotonic() - started, work)
    finally:
        stop_faults.set()
        if fault_thread is not None:
            fault_thread.join(60)
        if listener is not None:
            listener.stop()
        if proxy is not None:
            proxy.close()
        if broker is not None:
            broker.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(args: argparse.Namespace, figures: Figures, output: Output, elapsed: float, work: Path) -> int:
    received = len(output.received)
    distinct = len(output.distinct & set(range(args.messages)))
    lost = args.messages - distinct
    duplicates = received - len(output.distinct)
    out_of_order = sum(1 for a, b in zip(output.received, output.received[1:]) if b < a)
    errors = _count_lines(work, "send-*.err", "error:")
    reconnects = _count_lines(work, "listen.err", "reconnected") + _count_lines(work, "send-*.err", "reconnected")
    rows = [
        ("messages", f"{args.messages}"),
        ("QoS", f"{args.qos}"),
        ("rate", f"{args.rate:g}/s fed" if args.rate > 0 else "unpaced"),
        ("faults", f"{figures.restarts + figures.cut_rounds} (restarts {figures.restarts}, cuts {figures.cut_rounds}: "
                   f"{figures.connections_cut} connections)" + (f", {figures.restart_failures} failed restarts"
                                                               if figures.restart_failures else "")),
        ("send runs", f"{figures.send_runs} (exit codes {dict(sorted(figures.send_exit_codes.items()))})"),
        ("send re-runs", f"{figures.send_reruns} ({figures.resent_documents} documents re-sent)"),
        ("never confirmed", f"{figures.unconfirmed}"),
        ("listener restarts", f"{figures.listener_restarts}" + (f" (exit codes {figures.listener_exit_codes})"
                                                                  if figures.listener_exit_codes else "")),
        ("received lines", f"{received}"),
        ("distinct", f"{distinct}"),
        ("lost", f"{lost}"),
        ("duplicates", f"{duplicates} ({output.flagged_duplicate} lines flagged duplicate)"),
        ("out of order", f"{out_of_order}"),
        ("error: lines", f"{errors} (send stderr); reconnect warnings {reconnects}"),
        ("elapsed s", f"{elapsed:.1f}" + (" (--seconds reached)" if figures.timed_out else "")),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    ok = lost == 0 and (args.qos != 2 or duplicates == 0)
    print(f"{'result':<{width}}  {'PASS' if ok else 'FAIL'}")
    if lost and lost <= 20:
        missing = sorted(set(range(args.messages)) - output.distinct)
        print(f"{'missing':<{width}}  {missing}")
    return 0 if ok else 1


def _count_lines(work: Path, pattern: str, needle: str) -> int:
    total = 0
    for path in work.glob(pattern):
        total += sum(1 for line in path.read_text(errors="replace").splitlines() if needle in line)
    return total


if __name__ == "__main__":
    sys.exit(main())
