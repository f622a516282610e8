"""The scripted demo model, started inside whichever process runs agents, on first use."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings

from runs.demo.server import ScriptedModelServer

_lock = threading.Lock()
_server: Any = None


def demo_server_url() -> str:
    global _server
    with _lock:
        if _server is None:
            rate = settings.ORCHESTRATOR_DEMO_TOKEN_RATE or None
            prefill = settings.ORCHESTRATOR_DEMO_PREFILL_RATE or None
            explore = settings.ORCHESTRATOR_DEMO_EXPLORE
            _server = ScriptedModelServer(token_rate=rate, prefill_rate=prefill, explore=explore)
            _server.start()
        return str(_server.url)
