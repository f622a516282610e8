"""The scripted model: a real OpenAI-compatible HTTP server streaming SSE like llama.cpp's, for
tests and demos. Deterministic answers (scripts.py), a configurable token rate, prefill rate
(with llama.cpp's `prompt_progress` chunks when a request asks for `return_progress`) and
first-byte delay, injectable faults (faults.py), llama.cpp's `/props` (total_slots) and
`timings` (with a prompt cache: cache_n is the longest prefix shared with a recent prompt), a
restart that takes it away and brings it back (`restart`), and a count of its open requests
(watch.py).
Never the default when a real model is configured.

    python -m runs.demo.server --port 8081 --token-rate 50 --fault http_500:times=2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runs.demo.faults import FaultKind, FaultPlan, FaultRule
from runs.demo.scripts import ScriptedReply, exploring_reply, marker
from runs.demo.stream import (
    MODEL_ID,
    Stream,
    common_prefix,
    completion,
    prompt_words,
)
from runs.demo.watch import OpenRequests

PAD_WORD = "filler "  # one paced piece of padding (pad_reasoning)
# A server bound to every interface is reached locally through the loopback address.
_ANY_INTERFACE = ("", "0.0.0.0", "::")  # noqa: S104 - compared with, never bound here
# What a model with random weights emits: NUL, C0 controls, an ANSI escape, DEL, a C1 control
# and an unpaired surrogate (sent as the JSON escape \ud800, as a server would).
HOSTILE_TEXT = "\x00 nul \x01\x02\x07 bell \x1b[31mred\x1b[0m del\x7f c1\x85 lone\ud800 end"
PROMPT_CACHE_ENTRIES = 8  # recent prompts the simulated cache remembers


class ScriptedModelServer:
    """`with ScriptedModelServer() as server: ... server.url ...` (port 0 = a free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_rate: float | None = None,
        first_byte_delay: float = 0.0,
        prefill_rate: float | None = None,
        faults: FaultPlan | None = None,
        pad_reasoning: int = 0,
        record_emissions: bool = False,
        total_slots: int | None = 4,
        n_ctx: int = 8192,
        explore: int = 0,
    ) -> None:
        # Plain attributes, read per request, so a test may change them while the server runs.
        self.token_rate = token_rate
        self.first_byte_delay = first_byte_delay
        # Prompt tokens read per second (the part not in its cache); None: at once.
        self.prefill_rate = prefill_rate
        self.faults = faults or FaultPlan()
        # Filler words streamed as reasoning before every answer: benches that need streams
        # lasting seconds (the scripted answers take well under one) set it.
        self.pad_reasoning = pad_reasoning
        # Files a specialist reads beyond its script before it answers, as a real model that
        # keeps reading until its mode's caps stop it: what makes fast mode visible (0: none).
        self.explore = explore
        self.requests: list[dict[str, Any]] = []  # request bodies, in arrival order
        # A test's own answers: called with each request body; a reply it returns is sent
        # instead of the script's (None: the script answers). Hostile-model tests use it.
        self.responder: Callable[[dict[str, Any]], ScriptedReply | None] | None = None
        # (agent role, step kind, arrival, end) per completed stream, wall-clock seconds.
        self.timings: list[tuple[str, str, float, float]] = []
        # Opt-in, for latency benches: (stream id, reasoning + content characters streamed so
        # far, time.time() just after the chunk was flushed), and each stream's request body.
        # None when off, so ordinary use pays one attribute test per chunk.
        self.emissions: list[tuple[str, int, float]] | None = [] if record_emissions else None
        self.stream_bodies: dict[str, dict[str, Any]] = {}
        # What GET /props says (llama.cpp's --parallel and context); None: no /props (404).
        self.total_slots = total_slots
        self.n_ctx = n_ctx
        self.open_requests = OpenRequests()
        self.loading_until = 0.0  # until then, every request gets 503 "Loading model"
        self._prompt_cache: list[list[str]] = []
        self.stopping = threading.Event()  # wakes stalled handlers when the server stops
        self._lock = threading.Lock()
        self._host = host
        self._httpd = _Server((host, port), _Handler)
        self._port_kept = self.port  # a restart binds this port again
        self._httpd.scripted = self
        self._thread: threading.Thread | None = None
        self._serving = False

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in _ANY_INTERFACE else self._host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> ScriptedModelServer:
        """Serve in a background daemon thread; returns self."""
        self._serving = True
        # A short poll interval: stop() waits for it, and tests stop a server each.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (from another thread) or KeyboardInterrupt."""
        self._serving = True
        try:
            self._httpd.serve_forever()
        finally:
            self._serving = False
            self.stopping.set()
            self._httpd.server_close()

    def stop(self) -> None:
        self.stopping.set()
        if self._serving:
            self._serving = False
            self._httpd.shutdown()  # returns once serve_forever has left its loop
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def record_timing(self, body: dict[str, Any], started: float) -> None:
        role = marker(body, "Agent role") or "?"
        kind = marker(body, "Step kind") or "?"
        with self._lock:
            self.timings.append((role, kind, started, time.time()))

    def pause(self, seconds: float) -> None:
        """Sleep, unless the server stops first (so stalled threads do not outlive it)."""
        if seconds > 0:
            self.stopping.wait(seconds)

    def cached_prefix(self, body: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, how many of them a recent prompt shares): a prompt cache."""
        tokens = prompt_words(body)
        with self._lock:
            best, index = 0, -1
            for i, earlier in enumerate(self._prompt_cache):
                shared = common_prefix(tokens, earlier)
                if shared > best:
                    best, index = shared, i
            # A conversation's next turn continues in the slot that holds its last prompt;
            # another agent's prompt that only shares a system prompt takes a slot of its
            # own, so concurrent agents do not evict each other's conversations.
            if index >= 0 and best == len(self._prompt_cache[index]):
                self._prompt_cache.pop(index)
            self._prompt_cache.append(tokens)
            del self._prompt_cache[:-PROMPT_CACHE_ENTRIES]
        return len(tokens), best

    def restart(self, down_seconds: float, loading_seconds: float = 0.0) -> threading.Thread:
        """Go away as a crashed or restarted server does (open streams cut, connections
        refused) for `down_seconds`, then come back on the same port, answering 503
        "Loading model" for `loading_seconds` first, as llama.cpp does while it loads."""

        def cycle() -> None:
            self._serving = False
            self._httpd.shutdown()
            self._httpd.server_close()
            self.open_requests.cut_all()
            if self._thread is not None:
                self._thread.join(timeout=5)
            time.sleep(down_seconds)
            self.loading_until = time.monotonic() + loading_seconds
            self._httpd = _Server((self._host, self._port_kept), _Handler)
            self._httpd.scripted = self
            self.start()

        thread = threading.Thread(target=cycle, name="scripted-model-restart", daemon=True)
        thread.start()
        return thread


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled stream never keeps the process alive
    request_queue_size = 128  # 64+ agents may connect at once
    scripted: ScriptedModelServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-stream are routine here (cancelled agents, fault tests).
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the output
        pass

    def do_GET(self) -> None:
        scripted = self.server.scripted
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        elif path == "/props" and scripted.total_slots is not None:
            settings = {"n_ctx": scripted.n_ctx, "params": {"n_predict": -1}}
            props = {
                "default_generation_settings": settings,
                "total_slots": scripted.total_slots,
                "model_path": f"{MODEL_ID}.gguf",
                "build_info": "scripted",
            }
            self._json(200, props)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "code": 404}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "code": 404}})
            return
        body = self._read_body()
        if body is None:
            return
        started = time.time()
        scripted = self.server.scripted
        scripted.open_requests.arrived(self.connection)
        try:
            self._answer(scripted, body, started)
        finally:
            scripted.open_requests.ended(self.connection)

    def _answer(self, scripted: ScriptedModelServer, body: dict[str, Any], started: float) -> None:
        scripted.record(body)
        if time.monotonic() < scripted.loading_until:
            error = {"message": "Loading model", "type": "unavailable_error", "code": 503}
            self._json(503, {"error": error})
            return
        fault = scripted.faults.take(marker(body, "Agent role"))
        if fault is not None and self._fail_before_answering(fault):
            return
        reply = _reply(scripted, body, fault)
        # A client that goes away (a cancelled agent) leaves nothing to clean up.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
            if not body.get("stream"):
                self._json(200, completion(body, reply))
                return
            Stream(self, body, reply, fault).send()
            scripted.record_timing(body, started)

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            message = "the request body must be a JSON object with a messages list"
            self._json(400, {"error": {"message": message, "code": 400}})
            return None
        return body

    def _fail_before_answering(self, fault: FaultRule) -> bool:
        """Faults that strike before the 200: True when the request is already answered."""
        if fault.kind == FaultKind.REFUSE:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == FaultKind.HTTP_429:
            error = {"message": "all slots are busy", "code": 429}
            self._json(429, {"error": error}, fault.retry_after(1.0))
            return True
        if fault.kind == FaultKind.HTTP_500:
            self._json(500, {"error": {"message": "scripted internal error", "code": 500}})
            return True
        if fault.kind == FaultKind.HTTP_503:
            error = {"message": "Loading model", "type": "unavailable_error", "code": 503}
            self._json(503, {"error": error}, fault.retry_after(None))
            return True
        if fault.kind == FaultKind.STALL_FIRST_BYTE:
            self.server.scripted.pause(fault.stall_seconds)
        return False

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # One request per connection: no handler thread lingers on an idle keep-alive.
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        self.wfile.write(data)


def _reply(
    scripted: ScriptedModelServer, body: dict[str, Any], fault: FaultRule | None
) -> ScriptedReply:
    if fault is not None and fault.kind == FaultKind.LOOP_TOOL:
        return ScriptedReply(
            reasoning="Let me search once more. ",
            tool_calls=[("grep", {"pattern": "TODO", "path": "."})],
        )
    custom = scripted.responder(body) if scripted.responder is not None else None
    reply = custom if custom is not None else exploring_reply(body, scripted.explore)
    if pad := scripted.pad_reasoning:
        reply = dataclasses.replace(reply, reasoning=PAD_WORD * pad + reply.reasoning)
    if fault is not None and fault.kind == FaultKind.BAD_TOOL_ARGS and reply.tool_calls:
        # Always grep: the agent's error message then names a tool tests can expect.
        bad = ("grep", {"__raw__": '{"pattern": oops'})
        return ScriptedReply(reasoning=reply.reasoning, tool_calls=[bad])
    if fault is not None and fault.kind == FaultKind.NUL_TEXT:
        reasoning = f"{reply.reasoning}{HOSTILE_TEXT} "
        content = f"{reply.content}\n{HOSTILE_TEXT}\n" if reply.content else ""
        return dataclasses.replace(reply, reasoning=reasoning, content=content)
    return reply


def build_parser() -> argparse.ArgumentParser:
    kinds = ", ".join(k.value for k in FaultKind)
    parser = argparse.ArgumentParser(
        prog="python -m runs.demo",
        description="Serve the scripted OpenAI-compatible model (deterministic; tests and demos).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081; 0 = free)")
    parser.add_argument(
        "--token-rate", type=float, default=None, help="tokens/s per stream (default: unpaced)"
    )
    parser.add_argument(
        "--first-byte-delay", type=float, default=0.0, help="seconds before each stream starts"
    )
    parser.add_argument(
        "--prefill-rate",
        type=float,
        default=None,
        help="prompt tokens/s read before answering (default: at once)",
    )
    parser.add_argument(
        "--total-slots", type=int, default=4, help="what GET /props says (default 4)"
    )
    parser.add_argument(
        "--explore",
        type=int,
        default=0,
        metavar="N",
        help="files a specialist reads beyond its script, until its caps stop it (default 0)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"repeatable; kind[:role=X][:times=N][:seconds=S]; kinds: {kinds}",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C, printing the URL first."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = FaultPlan.parse(args.fault)
        pacing = {
            "token_rate": args.token_rate,
            "first_byte_delay": args.first_byte_delay,
            "prefill_rate": args.prefill_rate,
        }
        if args.explore < 0:
            raise ValueError(f"--explore must be 0 or more, got {args.explore}")
        server = ScriptedModelServer(
            args.host,
            args.port,
            faults=faults,
            total_slots=args.total_slots,
            explore=args.explore,
            **pacing,
        )
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    rules = ", ".join(rule.describe() for rule in faults.rules) or "none"
    print(f"scripted model serving at {server.url} (faults: {rules}; Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
