"""The scripted model: a real OpenAI-compatible HTTP server streaming SSE like llama.cpp's, for
tests and demos. Deterministic answers (scripts.py), a configurable token rate and first-byte
delay, injectable faults (faults.py), llama.cpp's `/props` (total_slots) and `timings` (with a
prompt cache: cache_n is the longest prefix shared with a recent prompt), a restart that
takes it away and brings it back (`restart`), and a count of its open requests (watch.py).
Never the default when a real model is configured.

    python -m devtools.fakemodel.server --port 8081 --token-rate 50 --fault http_500:times=2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.fakemodel.faults import FaultKind, FaultPlan, FaultRule
from devtools.fakemodel.scripts import ScriptedReply, marker, reply_for
from devtools.fakemodel.watch import OpenRequests

MODEL_ID = "scripted"
PAD_WORD = "filler "  # one paced piece of padding (pad_reasoning)
FAULT_AFTER_PIECES = 3  # mid-stream faults strike after this many paced pieces
# A server bound to every interface is reached locally through the loopback address.
_ANY_INTERFACE = ("", "0.0.0.0", "::")  # noqa: S104 - compared with, never bound here
_PIECE = re.compile(r"\S+\s*|\s+")  # one "token": a word and the whitespace after it
_MID_STREAM = {FaultKind.STALL_MID_STREAM, FaultKind.DROP_MID_STREAM, FaultKind.MALFORMED_CHUNK}
_CUTS = {FaultKind.LENGTH, FaultKind.CUT_TOOL_CALL}
CUT_AFTER_PIECES = 3  # a cut-off answer (or tool call's arguments) stops after this many
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
        faults: FaultPlan | None = None,
        pad_reasoning: int = 0,
        record_emissions: bool = False,
        total_slots: int | None = 4,
        n_ctx: int = 8192,
    ) -> None:
        # Plain attributes, read per request, so a test may change them while the server runs.
        self.token_rate = token_rate
        self.first_byte_delay = first_byte_delay
        self.faults = faults or FaultPlan()
        # Filler words streamed as reasoning before every answer: benches that need streams
        # lasting seconds (the scripted answers take well under one) set it.
        self.pad_reasoning = pad_reasoning
        self.requests: list[dict[str, Any]] = []  # request bodies, in arrival order
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
        tokens = _prompt_words(body)
        with self._lock:
            best, index = 0, -1
            for i, earlier in enumerate(self._prompt_cache):
                shared = _common_prefix(tokens, earlier)
                if shared > best:
                    best, index = shared, i
            if index >= 0:  # the slot that held the shared prefix now holds this prompt
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
                self._json(200, _completion(body, reply))
                return
            _Stream(self, body, reply, fault).send()
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
            self._json(429, {"error": error}, {"Retry-After": "1"})
            return True
        if fault.kind == FaultKind.HTTP_500:
            self._json(500, {"error": {"message": "scripted internal error", "code": 500}})
            return True
        if fault.kind == FaultKind.HTTP_503:
            error = {"message": "Loading model", "type": "unavailable_error", "code": 503}
            self._json(503, {"error": error})
            return True
        if fault.kind == FaultKind.STALL_FIRST_BYTE:
            self.server.scripted.pause(fault.seconds)
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
    reply = reply_for(body)
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


def _arguments(args: dict[str, Any]) -> str:
    """The JSON text of a tool call's arguments; `__raw__` injects text that is not JSON."""
    return str(args["__raw__"]) if "__raw__" in args else json.dumps(args)


def _prompt_tokens(body: dict[str, Any]) -> int:
    return len(_prompt_words(body))


def _prompt_words(body: dict[str, Any]) -> list[str]:
    """The prompt's "tokens": its messages' words, in order."""
    words: list[str] = []
    for message in body.get("messages") or []:
        words += str(message.get("content") or "").split()
    return words


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class _Stream:
    """Writes one answer as llama.cpp does: role, reasoning, content or tool calls, finish,
    usage, [DONE]. Chunked transfer, so a cut connection is visibly incomplete."""

    def __init__(
        self, handler: _Handler, body: dict[str, Any], reply: ScriptedReply, fault: FaultRule | None
    ) -> None:
        self.handler = handler
        self.scripted = handler.server.scripted
        self.body = body
        self.reply = reply
        self.fault = fault if fault is not None and fault.kind in _MID_STREAM else None
        self.cut = fault is not None and fault.kind in _CUTS  # stop early with "length"
        self.id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        self.sent = 0  # paced pieces so far: reasoning, content and argument fragments
        self.chars = 0  # reasoning + content characters so far (the emission log's offset)
        rate = self.scripted.token_rate
        self.delay = 1.0 / rate if rate else 0.0

    def send(self) -> None:
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        if self.scripted.emissions is not None:
            self.scripted.stream_bodies[self.id] = self.body
        prompt, cached = self.scripted.cached_prefix(self.body)
        self.scripted.pause(self.scripted.first_byte_delay)
        self._delta({"role": "assistant", "content": None})
        generating = time.monotonic()
        for piece in _PIECE.findall(self.reply.reasoning):
            self._delta({"reasoning_content": piece}, pace=True)
        finish = self._tool_calls() if self.reply.tool_calls else self._content()
        self._strike()  # a short answer still meets its mid-stream fault, before the finish
        # llama.cpp sends its timings with the last choice chunk.
        seconds = max(time.monotonic() - generating, 1e-6)
        timings = {
            "cache_n": cached,
            "prompt_n": prompt - cached,
            "prompt_ms": 1.0,
            "predicted_n": self.sent,
            "predicted_ms": seconds * 1000,
            "predicted_per_second": self.sent / seconds,
        }
        last = {"index": 0, "delta": {}, "finish_reason": finish}
        self._chunk({"choices": [last], "timings": timings})
        if (self.body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": self.sent,
                "total_tokens": prompt + self.sent,
            }
            self._chunk({"choices": [], "usage": usage})
        self._write(b"data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    def _content(self) -> str:
        limit = self.body.get("max_tokens")
        if self.cut:
            limit = min(limit or CUT_AFTER_PIECES, CUT_AFTER_PIECES)
        for count, piece in enumerate(_PIECE.findall(self.reply.content)):
            if limit and count >= limit:
                return "length"
            self._delta({"content": piece}, pace=True)
        return "stop"

    def _tool_calls(self) -> str:
        for index, (name, args) in enumerate(self.reply.tool_calls):
            call_id = f"call_{uuid.uuid4().hex[:8]}"
            function = {"name": name, "arguments": ""}
            opening = {"index": index, "id": call_id, "type": "function", "function": function}
            self._delta({"tool_calls": [opening]})
            raw = _arguments(args)
            # Arguments in 2-3 fragments, cut anywhere, as real servers stream them.
            cuts = sorted({0, len(raw) // 3, 2 * len(raw) // 3, len(raw)})
            for start, end in itertools.pairwise(cuts):
                fragment = {"index": index, "function": {"arguments": raw[start:end]}}
                self._delta({"tool_calls": [fragment]}, pace=True)
                if self.cut:  # the output limit strikes mid-arguments
                    return "length"
        return "tool_calls"

    def _delta(self, delta: dict[str, Any], *, pace: bool = False) -> None:
        self._chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        log = self.scripted.emissions
        text = delta.get("reasoning_content") or delta.get("content")
        if log is not None and text:
            self.chars += len(text)
            log.append((self.id, self.chars, time.time()))  # list.append is atomic
        if pace:
            self.sent += 1
            if self.sent >= FAULT_AFTER_PIECES:
                self._strike()
            if self.delay:
                self.scripted.pause(self.delay)

    def _strike(self) -> None:
        """Inject this stream's mid-stream fault, once."""
        fault, self.fault = self.fault, None
        if fault is None:
            return
        if fault.kind == FaultKind.STALL_MID_STREAM:
            self.scripted.pause(fault.seconds)
        elif fault.kind == FaultKind.DROP_MID_STREAM:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError  # ends the handler; the client sees a cut stream
        elif fault.kind == FaultKind.MALFORMED_CHUNK:
            self._write(b"data: {not json\n\n")

    def _chunk(self, payload: dict[str, Any]) -> None:
        envelope = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL_ID,
            **payload,
        }
        self._write(f"data: {json.dumps(envelope)}\n\n".encode())

    def _write(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()  # one chunk per write: the client sees each token at once


def _completion(body: dict[str, Any], reply: ScriptedReply) -> dict[str, Any]:
    """The non-streamed answer: one JSON completion."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": _arguments(a)}}
        for i, (n, a) in enumerate(reply.tool_calls)
    ]
    message = {"role": "assistant", "content": reply.content, "reasoning_content": reply.reasoning}
    choice = {"index": 0, "message": message | ({"tool_calls": calls} if calls else {})}
    choice["finish_reason"] = "tool_calls" if calls else "stop"
    prompt, completion = _prompt_tokens(body), len(_PIECE.findall(reply.reasoning + reply.content))
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {"object": "chat.completion", "model": MODEL_ID, "choices": [choice], "usage": usage}


def build_parser() -> argparse.ArgumentParser:
    kinds = ", ".join(k.value for k in FaultKind)
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fakemodel",
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
        pacing = {"token_rate": args.token_rate, "first_byte_delay": args.first_byte_delay}
        server = ScriptedModelServer(args.host, args.port, faults=faults, **pacing)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    rules = ", ".join(rule.describe() for rule in faults.rules) or "none"
    print(f"scripted model serving at {server.url} (faults: {rules}; Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
