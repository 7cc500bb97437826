"""A TCP proxy of our own, on loopback, that injects network faults between a client and a server.

Pure standard library. One relay thread runs a selector over non-blocking sockets; every control
call (:meth:`FaultProxy.cut`, :meth:`~FaultProxy.down`, :meth:`~FaultProxy.stall`, ...) is handed to
that thread and returns once it took effect, so that a test can act on it at once (after ``down()``
a connect is refused, after ``cut()`` the sockets are already reset, after ``stall()`` nothing more
is relayed).

Faults:

* ``cut()``: every relayed connection is closed abruptly on both sides (``SO_LINGER`` 0: a TCP RST),
  what waited in the proxy is dropped; new connections are still accepted;
* ``down()`` / ``up()``: the listening socket is closed (connects are refused) and the open connections
  are cut; ``up()`` listens again on the same port;
* ``stall()`` / ``resume()``: connections stay open but nothing is relayed either way (a black-holed
  network: bytes wait in the proxy, up to :data:`HIGH_WATER` per direction, then in the kernel's buffers,
  then the sender blocks); ``resume()`` delivers what waited, in order;
* ``stall_after(n)``: the same stall, begun by the relay thread itself once ``n`` more bytes went to the
  target, at that very byte: a client stalled in the middle of its work, however fast it is;
* ``cut_every(seconds, count)``: periodic cuts, run by the relay thread itself.

While the target refuses (a broker being restarted), an accepted connection is reset at once, as a
refused connect would be. Each direction has its own buffer; a side is not read while the buffer
towards the other side holds more than :data:`HIGH_WATER` bytes (backpressure).

    with FaultProxy("127.0.0.1", broker.port) as proxy:
        client.connect("127.0.0.1", proxy.port)
        ...
        proxy.cut()
"""

from __future__ import annotations

import errno
import itertools
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["FaultProxy", "HIGH_WATER", "READ_SIZE"]

#: A side is not read while the buffer towards the other side holds more than this (backpressure).
HIGH_WATER = 1 << 20
#: The most read from a socket at once.
READ_SIZE = 1 << 18
#: How long a control call waits for the relay thread before it gives up.
CONTROL_TIMEOUT = 10.0
#: Connections accepted per readiness event of the listening socket (the rest at the next round).
ACCEPT_BATCH = 64

_LINGER_ZERO = struct.pack("ii", 1, 0)
_names = itertools.count(1)
T = TypeVar("T")


def _abort(sock: socket.socket) -> None:
    """Close a socket with a TCP RST (SO_LINGER on, timeout 0) instead of an orderly FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    except OSError:
        pass
    sock.close()


class _Direction:
    """Bytes read from ``src`` waiting to be written to ``dst``."""

    __slots__ = ("src", "dst", "buf", "eof", "shut", "counter")

    def __init__(self, src: socket.socket, dst: socket.socket, counter: str) -> None:
        self.src, self.dst = src, dst
        self.buf = bytearray()
        self.eof = False  # src said EOF
        self.shut = False  # the EOF was passed on: dst shut down for writing
        self.counter = counter  # "bytes_up" / "bytes_down"

    @property
    def finished(self) -> bool:
        return self.shut


class _Pair:
    """One relayed connection: the accepted client socket and the socket to the target."""

    __slots__ = ("client", "upstream", "connecting", "up", "down", "masks")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.connecting = True
        self.up = _Direction(client, upstream, "bytes_up")
        self.down = _Direction(upstream, client, "bytes_down")
        self.masks: dict[socket.socket, int] = {client: 0, upstream: 0}


class FaultProxy:
    """A TCP proxy between clients and ``target_host:target_port`` that can cut, refuse and stall."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.connections = 0  # open relayed connections
        self.accepted = 0  # accepted since start
        self.cuts = 0  # connections cut (cut(), down(), periodic cuts)
        self.cut_rounds = 0  # cut operations run (each cut() and each periodic cut, even with nothing to cut)
        self.refused_upstream = 0  # accepted connections reset because the target refused
        self.bytes_up = 0  # client -> target
        self.bytes_down = 0  # target -> client
        self._stalled = False
        self._stall_at: int | None = None  # stall once bytes_up reaches this
        self._pairs: set[_Pair] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], dict[str, Any], threading.Event]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._running = False
        self._closed = False
        self._cut_period: float | None = None
        self._cut_left: int | None = None
        self._next_cut = 0.0
        self._buffer = bytearray(READ_SIZE)
        self._view = memoryview(self._buffer)
        self._listener: socket.socket | None = None
        self._listener = self._listen(port)  # bound now, so that ``port`` is known; accepting from start()
        self.port: int = self._listener.getsockname()[1]
        self._listening = False

    # -- the public API; every call runs in the relay thread once it runs -----------------------------

    def start(self) -> FaultProxy:
        if self._closed:
            raise RuntimeError("this FaultProxy is closed")
        if self._thread is not None:
            return self
        if self._listener is not None:
            self._listener.listen(128)
            self._selector.register(self._listener, selectors.EVENT_READ, None)
            self._listening = True
        self._running = True
        self._thread = threading.Thread(target=self._loop, name=f"FaultProxy-{next(_names)}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut(self) -> int:
        """Reset every open relayed connection on both sides; return how many. Accepting goes on."""
        return self._call(self._cut_all)

    def down(self) -> None:
        """Stop listening (connects are refused) and cut the open connections."""
        self._call(self._down)

    def up(self) -> None:
        """Listen again on the same port (no-op when listening)."""
        self._call(self._up)

    def stall(self) -> None:
        """Relay nothing either way until :meth:`resume`; bytes wait in the proxy, then in the kernel."""
        self._call(self._set_stalled, True)

    def resume(self) -> None:
        """Relay again: what waited is delivered, in order."""
        self._call(self._set_stalled, False)

    def stall_after(self, up_bytes: int) -> None:
        """Stall as :meth:`stall` does once ``up_bytes`` more bytes were relayed to the target (all
        connections together): the byte after them waits. :attr:`stalled` tells when it began."""
        if up_bytes < 0:
            raise ValueError("up_bytes must not be negative")
        self._call(self._arm_stall, up_bytes)

    def waiting(self) -> int:
        """Bytes held in the proxy's buffers now (both directions, every connection)."""
        return self._call(lambda: sum(len(p.up.buf) + len(p.down.buf) for p in self._pairs))

    @property
    def stalled(self) -> bool:
        return self._stalled

    @property
    def listening(self) -> bool:
        return self._listening

    def cut_every(self, seconds: float, count: int | None = None) -> None:
        """Cut every ``seconds`` (first one ``seconds`` from now), ``count`` times or until :meth:`stop_cutting`."""
        if seconds <= 0:
            raise ValueError("the period must be positive")
        if count is not None and count < 0:
            raise ValueError("count must be positive or None")
        self._call(self._schedule_cuts, seconds, count)

    def stop_cutting(self) -> None:
        self._call(self._schedule_cuts, None, None)

    def close(self) -> None:
        """Stop the relay thread, reset every connection, close every socket. Idempotent, prompt."""
        if self._closed:
            return
        self._closed = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._running = False
            self._wake()
            thread.join(CONTROL_TIMEOUT)
        self._shutdown()

    # -- the relay thread ---------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the relay thread (inline when it does not run) and return its result."""
        if self._closed:
            raise RuntimeError("this FaultProxy is closed")
        thread = self._thread
        if thread is None or threading.current_thread() is thread:
            return fn(*args)
        if not thread.is_alive():
            raise RuntimeError("the FaultProxy relay thread has stopped")
        done = threading.Event()
        outcome: dict[str, Any] = {}
        self._commands.put((lambda: fn(*args), outcome, done))
        self._wake()
        if not done.wait(CONTROL_TIMEOUT):
            raise TimeoutError("the FaultProxy relay thread did not answer")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already full of wake-ups, or closed: the loop wakes anyway

    def _run_commands(self) -> None:
        try:
            while True:
                self._wake_r.recv(4096)
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                fn, outcome, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the caller
                outcome["error"] = exc
            done.set()

    def _loop(self) -> None:
        select = self._selector.select
        try:
            while self._running:
                timeout = None
                if self._cut_period is not None:
                    timeout = max(0.0, self._next_cut - time.monotonic())
                for key, events in select(timeout):
                    if key.data is None:
                        if key.fileobj is self._wake_r:
                            self._run_commands()
                        elif key.fileobj is self._listener:
                            self._accept()
                        continue
                    pair, sock = key.data, key.fileobj
                    if pair not in self._pairs:
                        continue  # closed by an earlier event of this round
                    self._on_event(pair, sock, events)
                if self._cut_period is not None and time.monotonic() >= self._next_cut:
                    self._periodic_cut()
        finally:
            self._running = False
            self._drain_commands()

    def _drain_commands(self) -> None:
        """Answer calls made while the thread was stopping, so that no caller waits in vain."""
        while True:
            try:
                _fn, outcome, done = self._commands.get_nowait()
            except queue.Empty:
                return
            outcome["error"] = RuntimeError("this FaultProxy is closed")
            done.set()

    def _listen(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _accept(self) -> None:
        listener = self._listener
        for _ in range(ACCEPT_BATCH):
            if listener is None:
                return
            try:
                client, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ECONNABORTED, EMFILE: the next round tries again
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    return
                continue
            self.accepted += 1
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                upstream = socket.socket(socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET, socket.SOCK_STREAM)
            except OSError:
                _abort(client)
                continue
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rc = upstream.connect_ex(self.target)
            if rc not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self.refused_upstream += 1
                _abort(upstream)
                _abort(client)
                continue
            pair = _Pair(client, upstream)
            self._pairs.add(pair)
            self.connections = len(self._pairs)
            if rc == 0:
                pair.connecting = False
            self._update(pair)

    def _on_event(self, pair: _Pair, sock: socket.socket, events: int) -> None:
        if pair.connecting:
            if sock is pair.upstream and events & selectors.EVENT_WRITE:
                err = pair.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self.refused_upstream += 1
                    self._close_pair(pair, abort=True)
                    return
                pair.connecting = False
            elif sock is pair.client and events & selectors.EVENT_READ:
                if not self._read(pair, pair.up):
                    return
            self._update(pair)
            if not pair.connecting:
                self._flush(pair)
            return
        if events & selectors.EVENT_READ:
            direction = pair.up if sock is pair.client else pair.down
            if not self._read(pair, direction):
                return
        if events & selectors.EVENT_WRITE:
            direction = pair.down if sock is pair.client else pair.up
            if not self._write(pair, direction):
                return
        self._finish(pair)

    def _read(self, pair: _Pair, d: _Direction) -> bool:
        """Read what ``d.src`` has into ``d.buf`` and pass it on at once when possible; False if closed."""
        try:
            n = d.src.recv_into(self._buffer, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self._close_pair(pair, abort=True)
            return False
        if n == 0:
            d.eof = True
        else:
            d.buf += self._view[:n]
        if not pair.connecting and not self._stalled:
            return self._write(pair, d)
        return True

    def _write(self, pair: _Pair, d: _Direction) -> bool:
        """Write what waits in ``d.buf`` to ``d.dst``, pass on an EOF; False if the pair was closed."""
        if self._stalled or pair.connecting:
            return True
        buf = d.buf
        while buf:
            chunk = buf
            if self._stall_at is not None and d.counter == "bytes_up" and self._stall_at - self.bytes_up < len(buf):
                chunk = buf[:self._stall_at - self.bytes_up]
            try:
                n = d.dst.send(chunk)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close_pair(pair, abort=True)
                return False
            del buf[:n]
            if d.counter == "bytes_up":
                self.bytes_up += n
                if self._stall_at is not None and self.bytes_up >= self._stall_at:
                    self._stall_at = None
                    self._set_stalled(True)  # the rest waits, from this very byte
                    return True
            else:
                self.bytes_down += n
        if d.eof and not buf and not d.shut:
            d.shut = True
            try:
                d.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return True

    def _finish(self, pair: _Pair) -> None:
        if pair.up.finished and pair.down.finished:
            self._close_pair(pair, abort=False)
        else:
            self._update(pair)

    def _flush(self, pair: _Pair) -> None:
        if self._write(pair, pair.up) and self._write(pair, pair.down):
            self._finish(pair)

    def _update(self, pair: _Pair) -> None:
        """(Re)register the pair's sockets for what each can do next."""
        stalled = self._stalled
        if pair.connecting:
            client_mask = selectors.EVENT_READ if not pair.up.eof and len(pair.up.buf) < HIGH_WATER else 0
            upstream_mask = selectors.EVENT_WRITE
        else:
            up, down = pair.up, pair.down
            client_mask = upstream_mask = 0
            if not up.eof and len(up.buf) < HIGH_WATER:
                client_mask |= selectors.EVENT_READ
            if not down.eof and len(down.buf) < HIGH_WATER:
                upstream_mask |= selectors.EVENT_READ
            if not stalled:
                if down.buf:
                    client_mask |= selectors.EVENT_WRITE
                if up.buf:
                    upstream_mask |= selectors.EVENT_WRITE
        self._register(pair, pair.client, client_mask)
        self._register(pair, pair.upstream, upstream_mask)

    def _register(self, pair: _Pair, sock: socket.socket, mask: int) -> None:
        old = pair.masks[sock]
        if mask == old:
            return
        if old == 0:
            self._selector.register(sock, mask, pair)
        elif mask == 0:
            self._selector.unregister(sock)
        else:
            self._selector.modify(sock, mask, pair)
        pair.masks[sock] = mask

    def _close_pair(self, pair: _Pair, abort: bool) -> None:
        self._pairs.discard(pair)
        self.connections = len(self._pairs)
        for sock in (pair.client, pair.upstream):
            if pair.masks[sock]:
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
                pair.masks[sock] = 0
            if abort:
                _abort(sock)
            else:
                sock.close()

    # -- the faults (relay thread) -----------------------------------------------------------------

    def _cut_all(self) -> int:
        pairs = list(self._pairs)
        for pair in pairs:
            self._close_pair(pair, abort=True)
        self.cuts += len(pairs)
        self.cut_rounds += 1
        return len(pairs)

    def _down(self) -> None:
        if self._listener is not None:
            if self._listening:
                self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
            self._listening = False
        self._cut_all()

    def _up(self) -> None:
        if self._listener is not None:
            return
        listener = self._listen(self.port)
        try:
            listener.listen(128)
            if self._thread is not None:
                self._selector.register(listener, selectors.EVENT_READ, None)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._listening = self._thread is not None

    def _set_stalled(self, stalled: bool) -> None:
        if stalled == self._stalled:
            return
        self._stalled = stalled
        for pair in list(self._pairs):
            if pair not in self._pairs:
                continue
            if not stalled and not pair.connecting:
                self._flush(pair)  # delivers what waited, then re-registers
            else:
                self._update(pair)

    def _arm_stall(self, up_bytes: int) -> None:
        if up_bytes == 0:
            self._stall_at = None
            self._set_stalled(True)
        else:
            self._stall_at = self.bytes_up + up_bytes

    def _schedule_cuts(self, period: float | None, count: int | None) -> None:
        if period is None or count == 0:
            self._cut_period = self._cut_left = None
            return
        self._cut_period, self._cut_left = period, count
        self._next_cut = time.monotonic() + period

    def _periodic_cut(self) -> None:
        self._cut_all()
        if self._cut_left is not None:
            self._cut_left -= 1
            if self._cut_left <= 0:
                self._cut_period = self._cut_left = None
                return
        assert self._cut_period is not None
        # Fixed period; after a long pause do not fire a burst to catch up.
        self._next_cut = max(self._next_cut + self._cut_period, time.monotonic())

    # -- teardown ------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        for pair in list(self._pairs):
            self._close_pair(pair, abort=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._listening = False
        self._cut_period = None
        self._drain_commands()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "stalled" if self._stalled else "listening" if self._listening else "down"
        return (f"<FaultProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]} {state}, "
                f"{self.connections} open, {self.accepted} accepted, {self.cuts} cut>")
