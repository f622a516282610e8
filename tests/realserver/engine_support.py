"""What the real-server engine tests share: context sizes, the server-fault words, and a
poller of llama.cpp's /metrics."""

from __future__ import annotations

import threading

import httpx

from devtools.llamacpp.server import LlamaServer

CONTEXT_PER_SLOT = 12288  # a code review's prompts are about 3,000-5,000 tokens here
# Step errors that would mean the engine gave up on the server itself.
SERVER_FAULTS = ("refused", "unavailable", "dropped", "closed the connection", "went silent")


class Metrics:
    """Polls llama.cpp's /metrics: the most requests it ever processed and deferred at once."""

    def __init__(self, server: LlamaServer) -> None:
        self.server = server
        self.processing = self.deferred = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Metrics:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        with httpx.Client(timeout=2) as client:
            while not self._stop.is_set():
                try:
                    text = client.get(f"{self.server.url}/metrics").text
                except httpx.HTTPError:
                    text = ""  # restarting
                for line in text.splitlines():
                    name, _, value = line.partition(" ")
                    if name == "llamacpp:requests_processing":
                        self.processing = max(self.processing, int(float(value)))
                    elif name == "llamacpp:requests_deferred":
                        self.deferred = max(self.deferred, int(float(value)))
                self._stop.wait(0.02)
