"""Test helpers for the streaming backend: one turn's events, and a canned-SSE server for
the stream shapes other servers send."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runs.engine.agent.backends.base import EndpointConfig
from runs.engine.agent.backends.openai import OpenAICompatibleBackend

FAST = {"backoff_base": 0.01}
VALIDATOR = [
    {"role": "system", "content": "Step kind: validator\nAgent role: validator"},
    {
        "role": "user",
        "content": "### Output of synthesis (synthesizer)\n## Findings\n"
        "- **A** (codebase) `x.py:1` — `x = 1`\n- **B** (codebase) `y.py:2` — `y = 2`\n",
    },
]


def backend_for(url: str, **config: Any) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(EndpointConfig(base_url=url, model="scripted", **config))


def collect(
    url: str,
    messages: list[dict[str, Any]] = VALIDATOR,
    *,
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int | None = None,
    **config: Any,
) -> list[Any]:
    """Every event of one turn (raises what the backend raises)."""

    async def go() -> list[Any]:
        backend = backend_for(url, **{**FAST, **config})
        try:
            stream = backend.stream_turn(messages=messages, tools=tools, max_tokens=max_tokens)
            return [event async for event in stream]
        finally:
            await backend.aclose()

    return asyncio.run(go())


class Canned:
    """Answers every POST with the same status and raw body, then closes; counts the hits."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body, self.status, self.hits = body, status, 0
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                canned.hits += 1
                kind = "text/event-stream" if canned.status == 200 else "application/json"
                self.send_response(canned.status)
                self.send_header("Content-Type", kind)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(canned.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


def sse(*chunks: dict[str, Any] | str) -> bytes:
    lines = [c if isinstance(c, str) else f"data: {json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines).encode()


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}
