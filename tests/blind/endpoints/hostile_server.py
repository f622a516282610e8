"""A hostile OpenAI-compatible model server on loopback, written for the blind endpoint tests.

It answers `/props`, `/health`, `/v1/models` and `/v1/chat/completions` (streamed as SSE, or
one JSON body) the way llama.cpp's llama-server shapes them, but with hostile values where a
number or a string is expected: `/props` `total_slots` of 0, -1, 10**12, "4", NaN or missing;
llama.cpp-style `prompt_progress` objects and `timings` with NaN, Infinity, negatives,
processed > total, strings, huge numbers, missing fields, control bytes and NULs. The bodies
are written as raw text, so values JSON cannot carry (NaN, Infinity, 1e400) reach the client
exactly as a broken server would send them.

Every chat request is counted (open at once, the most ever open, how many in all) and its
body kept, so a test can say what the client asked and how hard it pushed.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What /props says for total_slots: raw JSON text, or None for "the key is missing".
HOSTILE_SLOTS: dict[str, str | None] = {
    "zero": "0",
    "negative": "-1",
    "huge": str(10**12),
    "string": '"4"',
    "nan": "NaN",
    "missing": None,
}

# A string field full of what must never reach stored text or a terminal.
NASTY = '"x\\u0000y\\u0007\\u001b[2J\\u001b]0;pwned\\u0007\\u0008\\u007f\\u0085z"'

# llama.cpp sends {"total", "cache", "processed", "time_ms"} while it reads the prompt.
HOSTILE_PROGRESS: list[str] = [
    '{"total": NaN, "cache": NaN, "processed": NaN, "time_ms": NaN}',
    '{"total": -100, "cache": -5, "processed": -1, "time_ms": -3}',
    '{"total": 10, "cache": 2, "processed": 500, "time_ms": 1}',
    '{"total": 10, "cache": 400, "processed": 5, "time_ms": 1}',
    '{"total": 0, "cache": 0, "processed": 0, "time_ms": 0}',
    '{"total": 0, "cache": 3, "processed": 7, "time_ms": 0}',
    '{"total": "100", "cache": "10", "processed": "250", "time_ms": "1"}',
    f'{{"total": {NASTY}, "cache": {NASTY}, "processed": {NASTY}, "time_ms": {NASTY}}}',
    '{"total": 1e308, "cache": 1e308, "processed": 1e308, "time_ms": 1e308}',
    '{"total": 1e400, "cache": -1e400, "processed": 1e400, "time_ms": 1e400}',
    '{"total": Infinity, "cache": -Infinity, "processed": Infinity, "time_ms": -Infinity}',
    f'{{"total": {10**40}, "cache": 0, "processed": {10**41}, "time_ms": {10**30}}}',
    '{"total": 3, "processed": 9}',
    "{}",
    '{"total": null, "cache": true, "processed": [1], "time_ms": {"a": 1}}',
    "null",
    '"50%"',
    "[1, 2, 3]",
    '{"total": 100, "cache": 0, "processed": 50, "time_ms": 12}',
]

# llama.cpp's `timings`: cache_n, prompt_n/ms/per_token_ms/per_second, predicted_* alike.
HOSTILE_TIMINGS: list[str] = [
    '{"cache_n": NaN, "prompt_n": NaN, "prompt_ms": NaN, "prompt_per_token_ms": NaN,'
    ' "prompt_per_second": NaN, "predicted_n": NaN, "predicted_ms": NaN,'
    ' "predicted_per_token_ms": NaN, "predicted_per_second": NaN}',
    '{"cache_n": -50, "prompt_n": -10, "prompt_ms": -1, "prompt_per_token_ms": -1,'
    ' "prompt_per_second": -1, "predicted_n": -4, "predicted_ms": -2,'
    ' "predicted_per_token_ms": -1, "predicted_per_second": -9}',
    '{"cache_n": 500, "prompt_n": 10, "prompt_ms": 1, "prompt_per_token_ms": 0.1,'
    ' "prompt_per_second": 10000, "predicted_n": 3, "predicted_ms": 1,'
    ' "predicted_per_token_ms": 0.3, "predicted_per_second": 3000}',
    '{"cache_n": 5, "prompt_n": 0, "prompt_ms": 0, "prompt_per_token_ms": 0,'
    ' "prompt_per_second": 0, "predicted_n": 7, "predicted_ms": 0,'
    ' "predicted_per_token_ms": 0, "predicted_per_second": 0}',
    f'{{"cache_n": {NASTY}, "prompt_n": "12", "prompt_ms": {NASTY}, "prompt_per_token_ms": "a",'
    f' "prompt_per_second": {NASTY}, "predicted_n": "7", "predicted_ms": "fast",'
    f' "predicted_per_token_ms": {NASTY}, "predicted_per_second": {NASTY}}}',
    f'{{"cache_n": {10**40}, "prompt_n": {10**39}, "prompt_ms": 1e308, "prompt_per_token_ms": 1e400,'
    f' "prompt_per_second": Infinity, "predicted_n": {10**40}, "predicted_ms": -Infinity,'
    ' "predicted_per_token_ms": 1e-320, "predicted_per_second": 1e400}',
    "{}",
    '{"cache_n": 3}',
    '{"cache_n": null, "prompt_n": [], "predicted_n": {}, "predicted_per_second": true}',
    "null",
    '"timings"',
    '{"cache_n": 1, "prompt_n": 100, "prompt_ms": 50, "prompt_per_token_ms": 0.5,'
    ' "prompt_per_second": 2000, "predicted_n": 20, "predicted_ms": 100,'
    ' "predicted_per_token_ms": 5, "predicted_per_second": 200}',
]

# The answer: a verdict any role can take (a validator finds its Summary and Confidence), with
# control bytes and a NUL in the text itself.
ANSWER_PARTS = [
    "Summary: nothing \\u0000to add\\u0007 from this server.\\n",
    "Confidence: low\\n",
    "Reasons: \\u001b[31mthe hostile\\u001b[0m server\\u0008 answered\\u0001 this.\\n",
    "- No findings in `app/views.py:6`.\\u007f\\n",
]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client hanging up mid-answer is the client's business, not a test failure


class HostileModelServer:
    """`with HostileModelServer(slots="nan") as server:` serves at `server.base_url` (…/v1)."""

    def __init__(
        self,
        *,
        slots: str = "zero",
        model: str = "hostile",
        hold_seconds: float = 0.3,
        progress_always: bool = True,
        progress_seconds: float = 0.1,
    ) -> None:
        self.slots_text = HOSTILE_SLOTS.get(slots, slots)
        self.model = model
        self.hold_seconds = hold_seconds
        self.progress_always = progress_always
        self.progress_seconds = progress_seconds
        self.lock = threading.Lock()
        self.open = 0
        self.max_open = 0
        self.total = 0
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._timings = itertools.cycle(HOSTILE_TIMINGS)
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> HostileModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_timings(self) -> str:
        with self.lock:
            return next(self._timings)

    # --- the bodies, as raw text ------------------------------------------------------------

    def props(self) -> str:
        slots = "" if self.slots_text is None else f'"total_slots": {self.slots_text}, '
        return (
            "{" + slots + '"default_generation_settings": {"n_ctx": 32768, "params": {}},'
            f' "model_alias": "{self.model}", "model_path": {NASTY},'
            ' "build_info": "b0-hostile\\u0000", "is_sleeping": false}'
        )

    def models(self) -> str:
        return (
            '{"object": "list", "data": ['
            f'{{"id": "{self.model}", "object": "model", "owned_by": {NASTY}, "created": NaN,'
            ' "meta": {"n_ctx_train": NaN, "n_vocab": -1, "n_params": 1e400, "size": "big"}},'
            f' {{"id": {NASTY}, "object": "model", "owned_by": "llamacpp", "created": -1}}'
            "]}"
        )

    def chunk(self, delta: str, *, extra: str = "", finish: str = "null") -> str:
        return (
            '{"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1,'
            f' "model": "{self.model}", "system_fingerprint": {NASTY},'
            f' "choices": [{{"index": 0, "delta": {delta}, "finish_reason": {finish}}}]{extra}}}'
        )

    def stream(self, asked_progress: bool) -> list[str]:
        """The SSE data lines of one streamed answer."""
        events: list[str] = []
        if asked_progress or self.progress_always:
            for progress in HOSTILE_PROGRESS:
                events.append(
                    self.chunk(
                        '{"role": "assistant", "content": null}',
                        extra=f', "prompt_progress": {progress}',
                    )
                )
        for index, part in enumerate(ANSWER_PARTS):
            # Per-token timings (llama.cpp's timings_per_token), each one hostile.
            timings = HOSTILE_TIMINGS[index % len(HOSTILE_TIMINGS)]
            events.append(self.chunk(f'{{"content": "{part}"}}', extra=f', "timings": {timings}'))
        usage = '{"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}'
        events.append(
            self.chunk(
                "{}",
                finish='"stop"',
                extra=f', "timings": {self.next_timings()}, "usage": {usage}',
            )
        )
        events.append("[DONE]")
        return events

    def whole(self) -> str:
        content = "".join(ANSWER_PARTS)
        return (
            '{"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1,'
            f' "model": "{self.model}", "choices": [{{"index": 0, "finish_reason": "stop",'
            f' "message": {{"role": "assistant", "content": "{content}"}}}}],'
            ' "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},'
            f' "timings": {self.next_timings()}}}'
        )

    # --- HTTP ---------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, text: str, kind: str = "application/json") -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                owner.paths.append(self.path)
                if path in ("/props", "/v1/props"):
                    self._send(200, owner.props())
                elif path in ("/v1/models", "/models"):
                    self._send(200, owner.models())
                elif path in ("/health", "/v1/health"):
                    self._send(200, '{"status": "ok"}')
                elif path == "/slots":
                    self._send(501, '{"error": {"code": 501, "message": "no\\u0000slots"}}')
                else:
                    self._send(404, '{"error": {"code": 404, "message": "File Not Found"}}')

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                owner.paths.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not path.endswith("/chat/completions"):
                    self._send(404, '{"error": {"code": 404, "message": "File Not Found"}}')
                    return
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                with owner.lock:
                    owner.open += 1
                    owner.total += 1
                    owner.max_open = max(owner.max_open, owner.open)
                    owner.bodies.append(body if isinstance(body, dict) else {})
                self.released = False
                try:
                    time.sleep(owner.hold_seconds)
                    if isinstance(body, dict) and body.get("stream"):
                        self._stream(bool(body.get("return_progress")))
                    else:
                        text = owner.whole()
                        self._release()
                        self._send(200, text)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    self._release()

            def _release(self) -> None:
                # The slot is free once generation is done, before the last bytes go out (as
                # llama.cpp frees it): a client that starts its next request on reading the
                # end is then never counted twice.
                if not self.released:
                    self.released = True
                    with owner.lock:
                        owner.open -= 1

            def _stream(self, asked_progress: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                events = owner.stream(asked_progress)
                for index, data in enumerate(events):
                    if index == len(events) - 2:
                        self._release()
                    payload = f"data: {data}\n\n".encode()
                    self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
                    self.wfile.flush()
                    # Progress lingers, so the live views (CLI line, pane, API) get to show it.
                    progress = '"prompt_progress"' in data
                    time.sleep(owner.progress_seconds if progress else 0.01)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
