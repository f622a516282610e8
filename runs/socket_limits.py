"""What one pane socket and one user may cost the server: messages per second per socket, and
per user in this process the sockets open and how fast new ones are opened.

Daphne queues every frame a browser sends for the consumer without limit, and the consumer
reads them one at a time; a socket that sends faster than its messages are handled grows
that queue (and the server's memory) for as long as it keeps sending, and a closed socket's
backlog is still worked through. So a socket over its rate is closed at once, before its
message is even parsed, and what it had queued is dropped unread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

# The pane sends a message when a person expands or collapses an agent, one resume after a
# reconnect and at most one timeline refresh a second; a person clicking through every agent
# of the largest roster stays far inside the burst.
BURST_MESSAGES = 60
MESSAGES_PER_SECOND = 10.0

# A person opening panes in several tabs, or reloading one, stays inside this; a script
# reconnecting in a loop does not. The burst is at least the sockets a user may hold.
BURST_CONNECTS = 20
CONNECTS_PER_SECOND = 1.0

CLOSE_TOO_FAST = 4429  # over the message rate (the reason is the last frame sent)
CLOSE_TOO_MANY_SOCKETS = 4430  # too many pane sockets open, or opened too fast, by the user


def now() -> float:
    """The buckets' clock (a test moves it forward instead of sleeping)."""
    return time.monotonic()


@dataclass
class TokenBucket:
    """`take()` is true while the socket is within its rate: a burst, then a steady rate."""

    capacity: float = BURST_MESSAGES
    rate: float = MESSAGES_PER_SECOND  # tokens added per second
    tokens: float = BURST_MESSAGES
    at: float = field(default_factory=lambda: now())

    def take(self) -> bool:
        now_ = now()
        self.tokens = min(self.capacity, self.tokens + (now_ - self.at) * self.rate)
        self.at = now_
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def rested(self) -> bool:
        """Full again by now: as if it had never been used."""
        return self.tokens + (now() - self.at) * self.rate >= self.capacity


class OpenSockets:
    """Pane sockets per user in this process: how many are open, and how fast new ones are
    opened (every connect reads the session, the run and a snapshot from the database, so a
    reconnect loop costs what a flood of messages would). With several server processes the
    limits hold in each: a process only knows its own sockets."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}
        self._connects: dict[int, TokenBucket] = {}

    def take(self, user_id: int, limit: int) -> str:
        """Count one more socket of the user's, or say why not ("" when taken)."""
        if self._held.get(user_id, 0) >= limit:
            return (
                f"this pane was closed: you have {limit} run panes open on this server; "
                "close one and reload"
            )
        bucket = self._connects.get(user_id)
        if bucket is None:
            self._forget_rested()
            # Every pane a user may hold can be opened at once (a browser restoring its tabs).
            burst = max(BURST_CONNECTS, limit)
            bucket = self._connects[user_id] = TokenBucket(
                capacity=burst, tokens=burst, rate=CONNECTS_PER_SECOND
            )
        if not bucket.take():
            return "this pane was closed: it reconnected too often; reload the page in a minute"
        self._held[user_id] = self._held.get(user_id, 0) + 1
        return ""

    def give_back(self, user_id: int) -> None:
        held = self._held.get(user_id, 0) - 1
        if held > 0:
            self._held[user_id] = held
        else:  # no count stays behind for a user with no socket
            self._held.pop(user_id, None)

    def held(self, user_id: int) -> int:
        return self._held.get(user_id, 0)

    def users(self) -> int:
        """Users with any state here: open sockets, or a connect rate not yet rested."""
        self._forget_rested()
        return len(self._held.keys() | self._connects.keys())

    def _forget_rested(self) -> None:
        """A user with no socket whose connect bucket has filled up again is forgotten: a
        fresh bucket is the same, so the table only holds users active lately."""
        for user_id, bucket in list(self._connects.items()):
            if user_id not in self._held and bucket.rested():
                del self._connects[user_id]


# One per process: every consumer runs on daphne's one event loop, so no lock is needed.
OPEN_SOCKETS = OpenSockets()
