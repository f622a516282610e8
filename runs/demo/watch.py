"""The scripted model's view of its open requests, for tests of the slot cap.

A client that closes its request (a cancelled agent) sends its FIN before anything it does
next; so when a new request arrives, every earlier request whose client has gone is already
readable at end-of-file. Pruning those first makes the count causal: a new request is
counted beside only the requests still open at the moment it arrived, whether or not their
handler threads have noticed yet.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class OpenRequests:
    cap: int | None = None  # when set, every arrival that finds more open is recorded
    peak: int = 0
    arrivals: int = 0
    # (time.time(), how many were open) for each arrival above the cap.
    over_cap: list[tuple[float, int]] = field(default_factory=list)
    _open: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def arrived(self, conn: socket.socket) -> int:
        """Count a request whose body has been read; returns how many are open with it."""
        with self._lock:
            self._open = {other for other in self._open if _still_open(other)}
            self._open.add(conn)
            count = len(self._open)
            self.arrivals += 1
            self.peak = max(self.peak, count)
            if self.cap is not None and count > self.cap:
                self.over_cap.append((time.time(), count))
            return count

    def ended(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.discard(conn)

    def current(self) -> int:
        with self._lock:
            self._open = {other for other in self._open if _still_open(other)}
            return len(self._open)

    def cut_all(self) -> int:
        """Shut every open request's connection (the server going away); returns how many."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def reset(self, cap: int | None = None) -> None:
        with self._lock:
            self.cap, self.peak, self.arrivals, self.over_cap = cap, len(self._open), 0, []


def _still_open(conn: socket.socket) -> bool:
    """False once the client has closed its end (readable, and nothing left to read)."""
    try:
        poller = select.poll()  # not select(): it cannot watch descriptors above 1023
        poller.register(conn, select.POLLIN)
        if not poller.poll(0):
            return True
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except (OSError, ValueError):  # closed or reset on our side: not open
        return False
