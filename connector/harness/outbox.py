"""A Send's durable outbox: which input documents the endpoint confirmed, kept in SQLite.

A connector may keep its session in memory only, so a Send killed with kill -9 forgets what the
endpoint confirmed. With an outbox, running the same command again (the same connector, the same
operation) skips every document confirmed before -- the same position in the input with the same
content (a SHA-256 of its payload and properties) -- and sends the rest.

Confirmations are committed before a document that would leave more than the connection's
in-flight window unrecorded is handed to the connector, so after a crash at most that window
of documents (sent, perhaps confirmed, not yet recorded) is sent again. A commit in WAL mode
costs about 12 microseconds and survives the process being killed; ``synchronous=NORMAL``
leaves only an operating system crash able to lose the last commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from connector.sdk.documents import Document, Result, Status
from connector.sdk.errors import ConfigError

_SCHEMA = """
create table if not exists send (key text not null, value text not null, primary key (key));
create table if not exists documents (
    position integer primary key,  -- the document's index in the input
    digest blob not null,          -- SHA-256 of its properties and payload
    status text not null,          -- SUCCESS, APPLICATION_ERROR or FAILURE (the latest run's)
    error text
);
"""

CONFIRMED_EARLIER = "confirmed by an earlier run (outbox)"


def _digest(document: Document) -> bytes:
    """SHA-256 of the document's properties (canonical JSON; bytes as hex) and its payload."""
    h = hashlib.sha256(json.dumps(document.properties, sort_keys=True, separators=(",", ":"), default=_hex).encode(
        "utf-8", "surrogatepass") if document.properties else b"")
    h.update(b"\0")
    h.update(document.payload)
    return h.digest()


def _hex(value: Any) -> str:
    return bytes(value).hex() if isinstance(value, (bytes, bytearray)) else repr(value)


#: The record's layout; an outbox without it was written by an earlier version, which recorded a
#: Send by three fields of its operation rather than by the whole of it.
FORMAT = "2"


def canonical(target: Mapping[str, Any]) -> str:
    """``target`` as canonical JSON: sorted keys, no spaces; equal targets give equal text."""
    return json.dumps(dict(target), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Outbox:
    """The record of one Send, keyed on its ``target``: the runtime's is the connector's id and
    the whole validated operation (``{"connector": ..., "operation": {...}}``)."""

    def __init__(self, path: str, target: Mapping[str, Any]) -> None:
        self.path = path
        self.target = canonical(target)
        if os.path.isdir(path):
            raise ConfigError(f"the outbox {path!r} is a directory: give a file name")
        if os.path.exists(path) and not os.path.isfile(path):  # a device, a pipe: SQLite needs a file
            raise ConfigError(f"the outbox {path!r} is not a regular file: give a file name")
        self._lock = _hold(path)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # A damaged file would otherwise fail half-way through the Send, documents sent.
            damage = self.db.execute("pragma quick_check").fetchone()[0]
            if damage != "ok":
                raise sqlite3.DatabaseError(f"it is damaged ({damage})")
            self.db.execute("pragma journal_mode=wal")
            self.db.execute("pragma synchronous=normal")
            self.db.executescript(_SCHEMA)
            rows = dict(self.db.execute("select key, value from send where key in ('target', 'format')"))
        except sqlite3.DatabaseError as exc:
            self._lock.close()
            raise ConfigError(f"cannot use {path!r} as an outbox: {exc} (give a new file, or the outbox of this "
                              "Send)") from None
        problem = _mismatch(path, rows, self.target)
        if problem is not None:
            self.db.close()
            self._lock.close()
            raise ConfigError(problem)
        if not rows:
            self.db.execute("begin")
            self.db.executemany("insert into send values (?, ?)", [("target", self.target), ("format", FORMAT)])
            self.db.execute("commit")
        self._unrecorded: list[tuple[int, bytes, str, str | None]] = []

    def commit(self) -> None:
        """Make every recorded result durable."""
        if self._unrecorded:
            rows, self._unrecorded = self._unrecorded, []
            self.db.execute("begin")
            self.db.executemany("insert or replace into documents values (?, ?, ?, ?)", rows)
            self.db.execute("commit")

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.db.close()
            self._lock.close()

    def _confirmed_before(self) -> Iterator[tuple[int, bytes]]:
        """``(position, digest)`` of every document confirmed before this run, in input order; read
        through a connection of its own, which sees the outbox as it was when the run began."""
        reader = sqlite3.connect(self.path)
        try:
            yield from reader.execute("select position, digest from documents where status = 'SUCCESS' "
                                      "order by position")
        finally:
            reader.close()

    def send(self, documents: Iterable[Document], window: int,
             connector_send: Callable[[Iterator[Document]], Iterator[Result]]) -> Iterator[Result]:
        """Results of ``documents`` in input order: SUCCESS at once for those confirmed before,
        ``connector_send``'s for the rest (their indexes mapped back to input positions)."""
        # In input order: [position, digest, result once known] for each document handed to the
        # connector, and a range for each run of documents skipped (confirmed before).
        ahead: deque[Any] = deque()
        handed: deque[list[Any]] = deque()  # the entries handed to the connector, awaiting results
        state = {"handed": 0, "durable": 0, "received": 0}
        confirmed = self._confirmed_before()

        def to_connector() -> Iterator[Document]:
            known = next(confirmed, None)
            for position, document in enumerate(documents):
                while known is not None and known[0] < position:
                    known = next(confirmed, None)
                digest = _digest(document)
                if known is not None and known[0] == position and known[1] == digest:
                    last = ahead[-1] if ahead else None
                    if isinstance(last, range) and last.stop == position:
                        ahead[-1] = range(last.start, position + 1)
                    else:
                        ahead.append(range(position, position + 1))
                    continue
                if state["handed"] - state["durable"] >= window:
                    self.commit()
                    state["durable"] = state["received"]
                entry = [position, digest, None]
                ahead.append(entry)
                handed.append(entry)
                state["handed"] += 1
                yield document

        def ready() -> Iterator[Result]:
            while ahead and (isinstance(ahead[0], range) or ahead[0][2] is not None):
                first = ahead.popleft()
                if isinstance(first, range):
                    for position in first:
                        yield Result(position, Status.SUCCESS, note=CONFIRMED_EARLIER)
                else:
                    yield first[2]

        try:
            for result in connector_send(to_connector()):
                entry = handed.popleft()
                entry[2] = Result(entry[0], result.status, result.error)
                self._unrecorded.append((entry[0], entry[1], result.status.value, result.error))
                state["received"] += 1
                yield from ready()
            self.commit()
            yield from ready()  # confirmed earlier, after the last document sent
        finally:
            confirmed.close()


def _hold(path: str) -> Any:
    """Lock ``path``'s outbox for this process, or raise ConfigError at once naming the process
    that holds it: two Sends on one outbox would each send what the other has not recorded yet.

    The lock is ``flock`` on ``PATH.lock`` (holding our pid), not a lock on the database itself:
    SQLite's own POSIX locks on it are dropped when any descriptor of the file is closed. The
    system releases it when the process ends, however it ends; the file stays (harmless).
    """
    import fcntl

    try:
        lock = open(path + ".lock", "a+")
    except OSError as exc:
        raise ConfigError(f"cannot use {path!r} as an outbox: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read(32).strip()
        lock.close()
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise ConfigError(f"the outbox {path!r} is in use by {who} (another Send): wait for it to end, or give "
                          "this Send its own outbox") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _mismatch(path: str, rows: Mapping[str, str], target: str) -> str | None:
    """Why the outbox whose ``send`` table holds ``rows`` cannot record the Send of ``target``, or None."""
    if not rows:
        return None  # a new outbox
    if rows.get("format") != FORMAT or "target" not in rows:
        return (f"the outbox {path!r} was written by an earlier version, which recorded a Send differently: finish "
                "that Send with the version that began it, or give a new outbox file")
    if rows.get("target") == target:
        return None
    differences = _differences(json.loads(rows["target"]), json.loads(target))
    return f"the outbox {path!r} records another Send ({differences}): give each Send its own outbox file"


def _differences(recorded: Any, this: Any, where: str = "") -> str:
    """What differs between the recorded target and this Send's, e.g. ``operation topic "a", not "b"``."""
    if not (isinstance(recorded, dict) and isinstance(this, dict)):
        return f"{where} {_short(recorded)}, not {_short(this)}".strip()
    keys = sorted(k for k in {*recorded, *this} if recorded.get(k, None) != this.get(k, None))
    parts = [_differences(recorded.get(k), this.get(k), f"{where} {k}".strip()) for k in keys[:3]]
    return "; ".join(parts) + ("; ..." if len(keys) > 3 else "")


def _short(value: Any) -> str:
    text = "none" if value is None else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
