"""Where the time goes per message: cProfile of every thread of a connector (or raw paho) worker.

``python -m bench.profile MODE [worker options]`` runs one bench worker (bench/workers.py) with
cProfile in the main thread and in paho's network thread, merges the two, and prints one JSON line:
the CPU seconds of the process and of the broker (from /proc when ``--broker-pid`` is given) and
the profile's own time split by where the code lives (connector, paho, json, threading/queue,
socket and I/O calls, the rest), plus the top functions.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import threading

import paho.mqtt.client as paho

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profiled(run):  # type: ignore[no-untyped-def]
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        profile = cProfile.Profile()
        with _lock:
            _profiles.append(profile)
        profile.enable()
        try:
            return run(*args, **kwargs)
        finally:
            profile.disable()
    return wrapper


def category(filename: str, name: str) -> str:
    if "/connector/" in filename:
        return "connector"
    if "/paho/" in filename:
        return "paho"
    if "/json/" in filename or "json" in name and filename == "~":
        return "json"
    if filename.endswith(("threading.py", "queue.py")) or "lock" in name or "Condition" in name:
        return "threads (locks, queue, waits)"
    if filename == "~" and any(w in name for w in ("socket", "select", "send", "recv", "write", "flush", "poll")):
        return "system calls (socket, select, write)"
    if "/bench/" in filename:
        return "bench driver"
    return "other (interpreter, stdlib)"


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str]) -> None:
    broker_pid = None
    if "--broker-pid" in argv:
        i = argv.index("--broker-pid")
        broker_pid = int(argv[i + 1])
        del argv[i:i + 2]
    count = int(argv[argv.index("--count") + 1]) if "--count" in argv else 1000
    paho.Client._thread_main = _profiled(paho.Client._thread_main)  # paho's network thread
    from bench import workers

    broker0 = _proc_cpu(broker_pid) if broker_pid else None
    cpu0 = workers.cpu_seconds()
    _profiled(workers.main)(argv)
    cpu = workers.cpu_seconds() - cpu0
    broker = _proc_cpu(broker_pid) - broker0 if broker_pid else None

    stats = pstats.Stats(_profiles[0])
    for profile in _profiles[1:]:
        stats.add(profile)
    shares: dict[str, float] = {}
    top = []
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        cat = category(filename, name)
        if (cat == "threads (locks, queue, waits)" and name.startswith("<method 'acquire'") or "wait" in name
                or "select" in name or "sleep" in name):  # paho's thread waits in select(), the Listen's linger
            cat = "idle (waiting on a lock or event)"
        shares[cat] = shares.get(cat, 0.0) + tottime
        top.append((tottime, f"{os.path.basename(filename)}:{name}", cat))
    top.sort(reverse=True)
    busy = {k: v for k, v in shares.items() if not k.startswith("idle")}
    busy_total = sum(busy.values()) or 1.0
    print(json.dumps({
        "mode": argv[0], "count": count, "process_cpu_s": cpu, "broker_cpu_s": broker,
        "process_cpu_us_per_msg": cpu / count * 1e6,
        "broker_cpu_us_per_msg": broker / count * 1e6 if broker is not None else None,
        "busy_share": {k: round(v / busy_total, 3) for k, v in sorted(busy.items(), key=lambda kv: -kv[1])},
        "busy_us_per_msg": {k: round(v / count * 1e6, 2) for k, v in sorted(busy.items(), key=lambda kv: -kv[1])},
        "top": [{"function": f, "category": c, "us_per_msg": round(t / count * 1e6, 2)}
                for t, f, c in top if not c.startswith("idle")][:15],
    }), file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
