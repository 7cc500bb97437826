"""Scale: Listens sharing one backlog, and one Listen with 10,000 filters.

    python -m bench.scale             # this part alone, full size: docs/bench-scale.json and the Scale
                                      # section of docs/performance.md
    python -m bench.scale --quick     # small, into a temporary folder
    python -m bench --skip scale      # the whole benchmark without it (it runs with the rest otherwise)

Through a Mosquitto of its own (bench/run.py's configuration: unbounded queues, a window of 20):

- **Shared group**: N persistent sessions (N = 1, 2, 4) subscribe to ``$share/scale/TOPIC`` at QoS 1
  and leave; one publisher fills the group's backlog (Mosquitto hands each message to one member,
  queued while it is away); then N ``mqtt-connector listen`` processes, started together, drain it
  to files. Timed from their start to the last message written (file sizes, fixed-size lines);
  every message counted once.
- **Many filters**: one persistent Listen whose session holds 10,000 filters
  (``bench/scale/f/I/+``), against one holding the single filter ``bench/scale/f/+/+``, drains a
  backlog spread over the 10,000 topics (``mqtt-connector listen --topic-file``); and the time to
  subscribe (the Python API: from the call to the last SUBACK, the operation's validation
  included).
- **Matcher**: a message's topic against 10,000 filters, one by one (``topics.matches``, as the
  Listen did before) and through the index (``topics.FilterSet``), microseconds per message.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import CLI, ENV, ROOT, Bench, Mosquitto, _median, machine, precompile, update_doc

#: Each message's payload: a fixed size, so that a file's size says how many lines it holds.
PAYLOAD = 64
GROUP_SIZES = (1, 2, 4)
#: The sizes of a full run and of --quick: the shared backlog, the many-filters backlog, the
#: filters, the topics the matcher is timed on.
SIZES = {"full": {"backlog": 200_000, "spread": 200_000, "filters": 10_000, "topics": 100_000},
         "quick": {"backlog": 2_000, "spread": 2_000, "filters": 10_000, "topics": 2_000}}


def _drain(bench: Bench, client_ids: list[str], filters: list[str], total: int, tmp: Path,
           stall: float = 60) -> tuple[float, float]:
    """Start one ``mqtt-connector listen`` per client ID (its persistent session's backlog) at once,
    each writing ``--format payload`` to a file of its own; the seconds until the files hold
    ``total`` lines together, from the start and from the first line written (start-up, connect
    and subscribe left out). The Listens are then stopped by SIGTERM (each by its pid)."""
    line = PAYLOAD + 1
    topic_args = ["--topic-file", str(_filters_file(tmp, filters))] if len(filters) > 1 else ["--topic", filters[0]]
    outs = [tmp / f"drain-{bench.seq}-{i}.out" for i in range(len(client_ids))]
    bench.seq += 1
    procs = []
    t0 = time.perf_counter()
    try:
        for client_id, out in zip(client_ids, outs):
            with open(out, "wb") as f:
                procs.append(subprocess.Popen(
                    [*CLI, "listen", *topic_args, "--qos", "1", "--persistent", "--client-id", client_id,
                     "--format", "payload", "--port", str(bench.port)],
                    stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE, env=ENV))
        first, before, moved = None, -1, t0  # give up after ``stall`` seconds without a new line
        while True:
            written = sum(out.stat().st_size for out in outs) // line
            if first is None and written:
                first = time.perf_counter()
            if written >= total:
                done = time.perf_counter()
                break
            if written != before:
                before, moved = written, time.perf_counter()
            ended = any(p.poll() is not None for p in procs)
            if ended or time.perf_counter() - moved > stall:
                errors = b"".join(p.stderr.read() for p in procs if p.poll() is not None and p.stderr)
                why = "a Listen ended" if ended else f"none for {stall:g} s"
                raise RuntimeError(f"the Listens wrote {written:,} of {total:,} messages ({why}): "
                                   f"{errors.decode(errors='replace')[-1500:]}")
            time.sleep(0.01)  # polling file sizes: 10 ms is well under the runs' seconds
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    counts = [out.stat().st_size // line for out in outs]
    if sum(counts) != total:
        raise RuntimeError(f"the Listens wrote {sum(counts):,} messages ({counts}), {total:,} were published")
    for out in outs:
        out.unlink()
    # all of a small backlog seen at one look: no time between first and last, count from the start
    return done - t0, (done - first) if first is not None and done > first else done - t0


def _filters_file(tmp: Path, filters: list[str]) -> Path:
    """The filters, one a line, in a file of their own (each run has its own topics)."""
    path = tmp / f"filters-{abs(hash(tuple(filters))):x}.txt"
    path.write_text("".join(f + "\n" for f in filters))
    return path


def shared_group(bench: Bench, size: int, count: int, tmp: Path) -> dict[str, Any]:
    """``size`` Listens of one shared group drain a backlog of ``count`` QoS 1 messages."""
    topic = f"bench/scale/s{bench.seq}"
    ids = [f"scale-{os.getpid()}-{bench.seq}-{i}" for i in range(size)]
    for client_id in ids:
        bench.worker("session", "--client-id", client_id, "--qos", 1, "--topic", f"$share/scale/{topic}")
    bench.worker("raw-send", "--qos", 1, "--count", count, "--size", PAYLOAD, "--topic", topic)
    wall, seconds = _drain(bench, ids, [f"$share/scale/{topic}"], count, tmp)
    return {"listens": size, "count": count, "seconds": seconds, "msgs": count / seconds, "wall_s": wall}


def many_filters(bench: Bench, filters: int, count: int, tmp: Path, spread: int) -> dict[str, Any]:
    """One Listen with ``filters`` filters (or the single one matching the same topics) drains a
    backlog of ``count`` QoS 1 messages spread over ``spread`` topics; and its subscribe time."""
    from connector.harness.runtime import Runtime

    prefix = f"bench/scale/f{bench.seq}"
    chosen = [f"{prefix}/{i}/+" for i in range(filters)] if filters > 1 else [f"{prefix}/+/+"]
    client_id = f"scale-{os.getpid()}-{bench.seq}-filters"
    runtime = Runtime(default_connector="mqtt")
    connection = {"port": bench.port, "client_id": client_id, "clean_session": False}
    t0 = time.perf_counter()
    with runtime.listen_in_background(connection, {"action": "listen", "topic": chosen, "qos": 1}) as listen:
        listen.wait_ready(120)
        subscribed = time.perf_counter() - t0
    bench.worker("raw-send", "--qos", 1, "--count", count, "--size", PAYLOAD, "--topic", f"{prefix}/{{}}/x",
                 "--spread", spread)
    wall, seconds = _drain(bench, [client_id], chosen, count, tmp)
    return {"filters": filters, "count": count, "seconds": seconds, "msgs": count / seconds, "wall_s": wall,
            "subscribe_s": subscribed}


def matcher(filters: int, topics: int) -> dict[str, float]:
    """Microseconds per message to match a topic against ``filters`` filters: one by one, and
    through the index."""
    from connector.mqtt.topics import FilterSet, matches

    chosen = [f"bench/{i}/+/x" for i in range(filters)]
    rng = random.Random(1)
    sample = [f"bench/{rng.randrange(filters)}/a/x" for _ in range(topics)]
    few = sample[:max(20, topics // 500)]
    t0 = time.perf_counter()
    found = sum(any(matches(f, topic) for f in chosen) for topic in few)
    linear = (time.perf_counter() - t0) / len(few)
    index = FilterSet(chosen)
    t0 = time.perf_counter()
    found += sum(map(index.match, sample))
    indexed = (time.perf_counter() - t0) / len(sample)
    if found != len(few) + len(sample):
        raise RuntimeError("the matcher missed a topic")
    return {"filters": filters, "linear_us": linear * 1e6, "index_us": indexed * 1e6}


def measure(bench: Bench, tmp: Path, repeats: int, quick: bool) -> dict[str, Any]:
    """Every scale figure (:data:`SIZES`), the runs of each interleaved (the order reversed at every repeat)."""
    size = SIZES["quick" if quick else "full"]
    many = size["filters"]
    groups: dict[int, list[dict]] = {}
    filters: dict[int, list[dict]] = {}
    for r in range(repeats):
        for listens in (GROUP_SIZES if r % 2 == 0 else GROUP_SIZES[::-1]):
            groups.setdefault(listens, []).append(shared_group(bench, listens, size["backlog"], tmp))
            print(f"  repeat {r + 1}/{repeats}: {listens} Listen(s) in a shared group", file=sys.stderr)
        for n in ((1, many) if r % 2 == 0 else (many, 1)):
            filters.setdefault(n, []).append(many_filters(bench, n, size["spread"], tmp, many))
            print(f"  repeat {r + 1}/{repeats}: a Listen with {n:,} filter(s)", file=sys.stderr)
    return {
        "shared": [_summary(runs, "listens") for _, runs in sorted(groups.items())],
        "filters": [{**_summary(runs, "filters"), "subscribe_s": _median([r["subscribe_s"] for r in runs])}
                    for _, runs in sorted(filters.items())],
        "matcher": matcher(many, size["topics"]),
    }


def _summary(runs: list[dict], key: str) -> dict[str, Any]:
    rates = [r["msgs"] for r in runs]
    return {key: runs[0][key], "count": runs[0]["count"], "msgs": _median(rates), "spread": [min(rates), max(rates)],
            "seconds": [r["seconds"] for r in runs], "wall_s": _median([r["wall_s"] for r in runs])}


def markdown(results: dict[str, Any]) -> str:
    """The Scale section's results: the machine, then a table per figure."""
    scale, m = results["scale"], results["machine"]
    one = scale["shared"][0]["msgs"]
    out = [f"Measured {m['started']}{' (--quick)' if results['quick'] else ''}: {m['cpus']} CPUs, Python {m['python']}, "
           f"{m['mosquitto']}; {results['repeats']} repeats, medians (spread lowest-highest); load average before "
           f"{m['load_before']}, after {m['load_after']}.", "",
           f"| Listens in one `$share` group | backlog (QoS 1, {PAYLOAD} B) | msg/s, all together | per Listen | "
           "against 1 Listen | whole run, start-up included |", "|---:|---:|---:|---:|---:|---:|"]
    for row in scale["shared"]:
        low, high = row["spread"]
        out.append(f"| {row['listens']} | {row['count']:,} | {row['msgs']:,.0f} ({low:,.0f}-{high:,.0f}) | "
                   f"{row['msgs'] / row['listens']:,.0f} | {row['msgs'] / one:.2f} | {row['wall_s']:.1f} s |")
    many = max(row["filters"] for row in scale["filters"])
    out += ["", f"| one Listen with | backlog (QoS 1, over {many:,} topics) | msg/s | whole run, start-up included | "
            "subscribe (API) |", "|---|---:|---:|---:|---:|"]
    for row in scale["filters"]:
        low, high = row["spread"]
        name = "1 filter (`.../+/+`)" if row["filters"] == 1 else f"{row['filters']:,} filters (`--topic-file`)"
        out.append(f"| {name} | {row['count']:,} | {row['msgs']:,.0f} ({low:,.0f}-{high:,.0f}) | {row['wall_s']:.1f} s | "
                   f"{row['subscribe_s'] * 1000:,.0f} ms |")
    match = scale["matcher"]
    out += ["", f"Matching a message's topic against {match['filters']:,} filters: one by one (as the Listen did "
            f"before) **{match['linear_us']:,.0f} µs**, through the index (`FilterSet`) **{match['index_us']:.2f} µs**."]
    return "\n".join(out)


def table(results: dict[str, Any]) -> list[str]:
    """The scale figures for the terminal."""
    scale = results.get("scale")
    if not scale:
        return []
    out = [f"shared group, {r['listens']} Listen(s): {r['msgs']:,.0f} msg/s ({r['count']:,} QoS 1 messages)"
           for r in scale["shared"]]
    out += [f"one Listen, {r['filters']:,} filter(s): {r['msgs']:,.0f} msg/s, subscribed in {r['subscribe_s'] * 1000:,.0f} ms"
            for r in scale["filters"]]
    match = scale["matcher"]
    out.append(f"matcher at {match['filters']:,} filters: {match['linear_us']:,.0f} µs/msg one by one, "
               f"{match['index_us']:.2f} µs/msg indexed")
    return out + [""]


def write(results: dict[str, Any], out: Path) -> None:
    """``bench-scale.json`` into ``out``; into docs/ also the Scale section of docs/performance.md."""
    (out / "bench-scale.json").write_text(json.dumps(results, indent=1) + "\n")
    if out.resolve() == (ROOT / "docs").resolve():
        update_doc(ROOT / "docs" / "performance.md", markdown(results), "scale")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small: 2,000 messages, one repeat, into a temporary folder "
                                                        "unless --out is given")
    p.add_argument("--repeats", type=int, help="repeats of each run (default 3; --quick 1)")
    p.add_argument("--out", help="where bench-scale.json goes (default docs/, which also updates docs/performance.md)")
    args = p.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="mqtt-bench-scale-")) if args.quick else ROOT / "docs"
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    precompile()
    results: dict[str, Any] = {"quick": args.quick, "repeats": repeats, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="mqtt-bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp).start()
        try:
            results["machine"]["mosquitto"] = broker.version()
            results["scale"] = measure(Bench(broker, tmp, args.quick), tmp, repeats, args.quick)
        finally:
            broker.stop()
    results["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write(results, out)
    print("\n".join(table(results)))
    print(f"wrote {out / 'bench-scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
