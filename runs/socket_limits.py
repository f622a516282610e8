"""What one pane socket and one user may cost the server: messages per second per socket, and
sockets per user in this process.

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

CLOSE_TOO_FAST = 4429  # over the message rate (the reason is the last frame sent)
CLOSE_TOO_MANY_SOCKETS = 4430  # the user holds too many pane sockets in this process


@dataclass
class TokenBucket:
    """`take()` is true while the socket is within its rate: a burst, then a steady rate."""

    capacity: float = BURST_MESSAGES
    rate: float = MESSAGES_PER_SECOND  # tokens added per second
    tokens: float = BURST_MESSAGES
    at: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class OpenSockets:
    """Pane sockets held per user in this process (with several server processes the cap
    holds in each: a process only knows its own sockets)."""

    def __init__(self) -> None:
        self._held: dict[int, int] = {}

    def take(self, user_id: int, limit: int) -> bool:
        held = self._held.get(user_id, 0)
        if held >= limit:
            return False
        self._held[user_id] = held + 1
        return True

    def give_back(self, user_id: int) -> None:
        held = self._held.get(user_id, 0) - 1
        if held > 0:
            self._held[user_id] = held
        else:  # no entry stays behind for a user with no socket
            self._held.pop(user_id, None)

    def held(self, user_id: int) -> int:
        return self._held.get(user_id, 0)

    def users(self) -> int:
        return len(self._held)


# One per process: every consumer runs on daphne's one event loop, so no lock is needed.
OPEN_SOCKETS = OpenSockets()
