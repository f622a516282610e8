"""Daphne's WebSocket protocol, paced: a socket is read no faster than its consumer takes
its messages.

Daphne hands every frame it reads to the application through an unbounded queue. A browser
that sends faster than the consumer handles messages (four sockets sending 5 KB `resume`
messages in a loop, say) fills that queue, and the server's memory with it, at the speed of
the network: the consumer's own message rate (runs.socket_limits) cannot close a socket
before the backlog it has not read yet is already in memory. So once a socket has
`MAX_UNREAD` messages waiting, its transport stops reading (TCP pushes back on the sender)
until the consumer has taken half of them. And once the application closes a socket (over
its limits), nothing more is read from it: the close frame is sent and the connection ends
without working through what the sender still has in flight.
"""

from __future__ import annotations

from typing import Any

from daphne.ws_protocol import WebSocketProtocol

MAX_UNREAD = 8  # messages waiting for the consumer before the socket stops being read
POLL_SECONDS = 0.005  # how often a paused socket looks at its queue again


def _later(delay: float, call: Any, *args: Any) -> None:
    # Imported here: importing the reactor installs one, and daphne installs its own first.
    from twisted.internet import reactor

    timer: Any = reactor
    timer.callLater(delay, call, *args)


class PacedWebSocketProtocol(WebSocketProtocol):
    paused = False

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        super().onMessage(payload, isBinary)
        queue = getattr(self, "application_queue", None)
        if not self.paused and queue is not None and queue.qsize() >= MAX_UNREAD:
            self.paused = True
            self.transport.pauseProducing()
            _later(POLL_SECONDS, self._resume_when_read)

    def _resume_when_read(self) -> None:
        if self.state != self.STATE_OPEN:
            return  # closing or gone: never read again
        if self.application_queue.qsize() > MAX_UNREAD // 2:
            _later(POLL_SECONDS, self._resume_when_read)
            return
        self.paused = False
        self.transport.resumeProducing()

    def serverClose(self, code: int | None = None) -> None:
        super().serverClose(code=code)
        self.transport.pauseProducing()
        # The close frame is written first; then the TCP connection ends (no reply awaited).
        _later(0, self.dropConnection, False)


def pace_websockets(server: Any) -> None:
    """Make a daphne Server's future WebSocket connections paced (call before it accepts any:
    from its ready_callable, which runs before the reactor does)."""
    server.ws_factory.protocol = PacedWebSocketProtocol
