"""The scripted model: a real OpenAI-compatible HTTP server with SSE streaming, for tests and
demos. Deterministic answers (see scripts.py), a configurable token rate and first-byte delay,
and injectable faults (see faults.py). Never the default when a real model is configured."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runs.fakemodel.faults import FaultKind, FaultPlan, FaultRule
from runs.fakemodel.scripts import ScriptedReply, marker, reply_for

MODEL_ID = "scripted"
_PIECE = re.compile(r"\S+\s*|\s+")


class ScriptedModelServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_rate: float | None = None,
        first_byte_delay: float = 0.0,
        faults: FaultPlan | None = None,
    ) -> None:
        # Read per request, so a test may change them while the server runs.
        self.token_rate = token_rate
        self.first_byte_delay = first_byte_delay
        self.faults = faults or FaultPlan()
        self.requests: list[dict[str, Any]] = []
        # (agent role, step kind, arrival, end) per streamed request, wall-clock seconds.
        self.timings: list[tuple[str, str, float, float]] = []
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.scripted = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedModelServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="scripted-model", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    scripted: ScriptedModelServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the log
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "the request body is not JSON"}})
            return
        started = time.time()
        scripted = self.server.scripted
        scripted.record(body)
        fault = scripted.faults.take(marker(body, "Agent role"))
        if fault is not None and self._fail_before_streaming(fault):
            return
        reply = _reply(body, fault)
        if not body.get("stream"):
            self._json(200, _completion(reply))
            return
        # A client that goes away mid-stream (a cancelled agent) leaves nothing to clean up.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            _Stream(self, body, reply, fault).send()
            scripted.record_timing(body, started)

    def _fail_before_streaming(self, fault: FaultRule) -> bool:
        if fault.kind == FaultKind.REFUSE:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == FaultKind.HTTP_429:
            self._json(429, {"error": {"message": "all slots are busy"}}, {"Retry-After": "1"})
            return True
        if fault.kind == FaultKind.HTTP_500:
            self._json(500, {"error": {"message": "scripted internal error"}})
            return True
        if fault.kind == FaultKind.STALL_FIRST_BYTE:
            time.sleep(fault.seconds)
        return False

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _reply(body: dict[str, Any], fault: FaultRule | None) -> ScriptedReply:
    if fault is not None and fault.kind == FaultKind.LOOP_TOOL:
        return ScriptedReply(tool_calls=[("grep", {"pattern": "TODO", "path": "."})])
    reply = reply_for(body)
    if fault is not None and fault.kind == FaultKind.BAD_TOOL_ARGS and reply.tool_calls:
        return ScriptedReply(reasoning=reply.reasoning, tool_calls=[("grep", {"__raw__": "{oops"})])
    return reply


class _Stream:
    """Writes one answer as llama.cpp does: role, reasoning, content or tool calls, usage."""

    def __init__(
        self, handler: _Handler, body: dict[str, Any], reply: ScriptedReply, fault: Any
    ) -> None:
        self.handler = handler
        self.body = body
        self.reply = reply
        self.fault = fault
        self.id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        self.sent = 0
        scripted = handler.server.scripted
        self.delay = 1.0 / scripted.token_rate if scripted.token_rate else 0.0
        self.first_byte_delay = scripted.first_byte_delay

    def send(self) -> None:
        h = self.handler
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        # Chunked, as llama.cpp streams: a cut connection is then visibly incomplete.
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        if self.first_byte_delay:
            time.sleep(self.first_byte_delay)
        self._delta({"role": "assistant", "content": None})
        for piece in _PIECE.findall(self.reply.reasoning):
            self._delta({"reasoning_content": piece}, pace=True)
        finish = self._content() if not self.reply.tool_calls else self._tool_calls()
        self._chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        if (self.body.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(str(m.get("content") or "").split()) for m in self.body["messages"])
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": self.sent,
                "total_tokens": prompt + self.sent,
            }
            self._chunk({"choices": [], "usage": usage})
        self._write(b"data: [DONE]\n\n")
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def _content(self) -> str:
        limit = self.body.get("max_tokens")
        for count, piece in enumerate(_PIECE.findall(self.reply.content)):
            if limit and count >= limit:
                return "length"
            self._delta({"content": piece}, pace=True)
        return "stop"

    def _tool_calls(self) -> str:
        for index, (name, args) in enumerate(self.reply.tool_calls):
            raw = str(args["__raw__"]) if "__raw__" in args else json.dumps(args)
            call_id = f"call_{uuid.uuid4().hex[:8]}"
            self._delta(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
            half = len(raw) // 2
            for part in (raw[:half], raw[half:]):
                self._delta(
                    {"tool_calls": [{"index": index, "function": {"arguments": part}}]}, pace=True
                )
        return "tool_calls"

    def _delta(self, delta: dict[str, Any], *, pace: bool = False) -> None:
        self._chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        if pace:
            self.sent += 1
            self._maybe_fault()
            if self.delay:
                time.sleep(self.delay)

    def _maybe_fault(self) -> None:
        if self.fault is None or self.sent != 3:
            return
        kind = self.fault.kind
        if kind == FaultKind.STALL_MID_STREAM:
            time.sleep(self.fault.seconds)
        elif kind == FaultKind.DROP_MID_STREAM:
            self.handler.connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionResetError
        elif kind == FaultKind.MALFORMED_CHUNK:
            self._write(b"data: {not json\n\n")

    def _chunk(self, payload: dict[str, Any]) -> None:
        payload = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL_ID,
            **payload,
        }
        self._write(f"data: {json.dumps(payload)}\n\n".encode())

    def _write(self, data: bytes) -> None:
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()


def _completion(reply: ScriptedReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
    finish = "tool_calls" if reply.tool_calls else "stop"
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "model": MODEL_ID,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fake_model", description="Serve the scripted OpenAI-compatible model."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token-rate", type=float, default=None, help="tokens/s per stream")
    parser.add_argument("--first-byte-delay", type=float, default=0.0, help="seconds")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        help="kind[:role=X][:times=N][:seconds=S]; kinds: " + ", ".join(k.value for k in FaultKind),
    )
    args = parser.parse_args(argv)
    try:
        faults = FaultPlan.parse(args.fault)
        server = ScriptedModelServer(
            args.host,
            args.port,
            token_rate=args.token_rate,
            first_byte_delay=args.first_byte_delay,
            faults=faults,
        )
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    print(f"scripted model serving at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
