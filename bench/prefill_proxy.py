"""The prefill bench's model endpoint: the scripted model decides every answer, a real llama-server
evaluates every prompt.

The orchestrator talks to this proxy as to any OpenAI-compatible server. For each chat request:

1. the scripted model (runs/demo/scripts.py) decides the answer, as in every other bench;
2. llama-server renders the answer as its chat template writes that assistant turn
   (`POST /apply-template` with and without it; the difference) and tokenizes it (`/tokenize`);
3. the request goes to llama-server's own `/v1/chat/completions` with the same messages and
   tools, `tool_choice: "none"` (the tools stay in the rendered prompt, but a grammar may decide
   the output) and a grammar of the answer's exact token ids: the server evaluates the prompt as
   for a real run (same tokens, same message spans, so the same context checkpoints), really
   decodes the answer, and its slot ends holding the tokens a real model would have left there;
   `id_slot` and `return_progress` are passed through;
4. the scripted answer is streamed back as OpenAI SSE with llama-server's own `timings` (and
   `usage` from them) on the last chunks.

Random-weight models never call tools, so this is how a run gets its real turn structure while the
server pays the real prompt cost. Every request is logged (`Evaluation`), and `GET /props`
reports the real server's, slots included.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from runs.demo.scripts import ScriptedReply, exploring_reply, marker

# What ends an assistant turn in the templates the bench uses (Qwen's ChatML, Gemma's turns):
# the model emits it as its end-of-generation token, so it is not part of the forced answer.
END_OF_TURN = re.compile(r"(<\|im_end\|>|<end_of_turn>)\s*$")
SHARED_PREFIX_END = "## Your part"  # flows/prompts.py: every agent's system prompt, to here
_PIECE = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class Evaluation:
    """One request as llama-server evaluated it."""

    role: str  # the agent's role (its step), from the system prompt's marker
    kind: str  # specialist, synthesizer, validator
    turn: int  # 1 for an agent's first request, then one more per assistant turn it holds
    prompt_n: int  # prompt tokens evaluated
    cache_n: int  # prompt tokens reused from the server's cache
    predicted_n: int  # tokens decoded
    forced_n: int  # tokens of the answer the grammar forced (decoded = this + end of turn)
    start: float  # time.time() when the proxy sent /completion
    end: float  # ... and when its answer was complete

    @property
    def sent(self) -> int:
        return self.prompt_n + self.cache_n


class EvaluatingProxy:
    """`with EvaluatingProxy(llama_root) as proxy: ... proxy.url ...` (a free loopback port)."""

    def __init__(
        self,
        llama_root: str,
        *,
        explore: int = 0,
        prime: bool = False,
        layout: str = "as-sent",
        timeout: float = 600.0,
    ) -> None:
        self.llama_root = llama_root.rstrip("/")
        self.explore = explore
        self.prime = prime
        self.layout = layout
        self.primed: set[str] = set()  # shared prefixes already sent
        self.primes: list[tuple[float, float, dict[str, Any]]] = []  # start, end, timings
        # A fresh connection per call: a pooled one the server has closed meanwhile (its
        # keep-alive timeout) fails as "Server disconnected without sending a response".
        self.client = httpx.Client(
            timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.evaluations: list[Evaluation] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._prime_lock = threading.Lock()
        self.open_requests = 0  # chat requests open at llama-server now
        self.max_open = 0  # ... and the most ever open at once (its slots cap it)
        self.gone = False  # go_away(): the endpoint's server was killed
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.proxy = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> EvaluatingProxy:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.client.close()

    def go_away(self) -> None:
        """The endpoint disappears as a crashed box would: new connections are refused and the
        requests in flight end without an answer (their sockets close)."""
        self.gone = True
        self._httpd.shutdown()
        self._httpd.server_close()

    def props(self) -> dict[str, Any]:
        response = self.client.get(f"{self.llama_root}/props")
        response.raise_for_status()
        return dict(response.json())

    def render_answer(self, body: dict[str, Any], reply: ScriptedReply) -> str:
        """The answer as the template writes that assistant turn, without its end-of-turn
        marker: the same conversation rendered with and without it, the difference."""
        request = {"messages": body["messages"], "tools": body.get("tools") or []}
        prompt = self._post("/apply-template", request)["prompt"]
        whole = self._post(
            "/apply-template",
            {
                **request,
                "messages": [*body["messages"], assistant_message(reply)],
                "add_generation_prompt": False,
            },
        )["prompt"]
        rendered = whole[len(prompt) :] if whole.startswith(prompt) else reply.content
        return END_OF_TURN.sub("", rendered)

    def prime_shared_prefix(self, body: dict[str, Any]) -> None:
        """Before the first agent's first turn: have the server evaluate the run's shared prefix
        alone (the system prompt up to its "Your part" heading, rendered by the template).

        A server that cannot trim its state (recurrent or sliding-window layers) reuses a prefix
        only from a context checkpoint, which it makes at user messages and a few tokens before
        a prompt's end: this request's end is the shared prefix's, so every agent's first turn
        finds a checkpoint there instead of re-processing its whole prompt."""
        system = next((m for m in body["messages"] if m.get("role") == "system"), None)
        text = str((system or {}).get("content") or "")
        shared, found, _ = text.partition(SHARED_PREFIX_END)
        if not found or shared in self.primed:
            return
        self.primed.add(shared)
        sentinel = "\x00PRIME\x00"
        rendered = self._post(
            "/apply-template",
            # A user message too: some templates (Gemma's) write the system text into it.
            {
                "messages": [
                    {"role": "system", "content": shared + sentinel},
                    {"role": "user", "content": "-"},
                ]
            },
        )["prompt"]
        prompt = rendered[: rendered.index(sentinel)] if sentinel in rendered else ""
        if not prompt:
            return
        started = time.time()
        answer = self._post(
            "/completion",
            {"prompt": prompt, "n_predict": 0, "cache_prompt": True, "id_slot": -1},
        )
        with self._lock:
            self.primes.append((started, time.time(), dict(answer.get("timings") or {})))

    def evaluate(self, original: dict[str, Any], reply: ScriptedReply, sink: Any) -> Evaluation:
        """Have llama-server evaluate the request as its chat endpoint does and decode `reply`;
        progress chunks go to `sink` as they come."""
        body = role_in_user(original) if self.layout == "role-in-user" else original
        tokens = self._post(
            "/tokenize",
            {
                "content": self.render_answer(body, reply),
                "add_special": False,
                "parse_special": True,
                "with_pieces": True,
            },
        )["tokens"]
        # The chat endpoint itself, so the prompt, its message spans (where llama.cpp places
        # context checkpoints) and the slot choice are exactly a real run's. tool_choice "none"
        # keeps the tools in the rendered prompt but lets a grammar decide the output: the
        # answer's exact tokens, then the end of generation.
        request: dict[str, Any] = {
            "messages": body["messages"],
            "tools": body.get("tools") or [],
            "tool_choice": "none",
            "grammar": forced_tokens(tokens),
            "max_tokens": len(tokens) + 1,
            "temperature": 0.0,
            "stream": True,
            "cache_prompt": True,
        }
        for passed in ("id_slot", "return_progress"):
            if passed in body:
                request[passed] = body[passed]
        if not request["tools"]:
            del request["tools"], request["tool_choice"]
        started = time.time()
        timings: dict[str, Any] = {}
        url = f"{self.llama_root}/v1/chat/completions"
        with self._lock:
            self.open_requests += 1
            self.max_open = max(self.max_open, self.open_requests)
        try:
            with self.client.stream("POST", url, json=request) as response:
                if response.status_code != 200:
                    raise RuntimeError(
                        f"llama-server {response.status_code}: {response.read()[:300]!r}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if "prompt_progress" in chunk:
                        sink(chunk["prompt_progress"])
                    if isinstance(chunk.get("timings"), dict):
                        timings = chunk["timings"]
        finally:
            with self._lock:
                self.open_requests -= 1
        evaluation = Evaluation(
            role=marker(original, "Agent role") or "?",
            kind=marker(original, "Step kind") or "?",
            turn=1 + sum(1 for m in body["messages"] if m.get("role") == "assistant"),
            prompt_n=int(timings.get("prompt_n", 0)),
            cache_n=int(timings.get("cache_n", 0)),
            predicted_n=int(timings.get("predicted_n", 0)),
            forced_n=len(tokens),
            start=started,
            end=time.time(),
        )
        with self._lock:
            self.evaluations.append(evaluation)
        return evaluation

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(f"{self.llama_root}{path}", json=payload)
        if response.status_code != 200:
            raise RuntimeError(f"llama-server {path} {response.status_code}: {response.text[:300]}")
        return dict(response.json())


def role_in_user(body: dict[str, Any]) -> dict[str, Any]:
    """The request with its system prompt's own part (from "## Your part") moved to the start
    of the first user message: every agent's system message, and the tools block the template
    writes after it, are then the same, and they differ only from a user message on, where
    llama.cpp makes a context checkpoint. An experiment on the layout, not the product's."""
    messages = [dict(m) for m in body["messages"]]
    system = next((m for m in messages if m.get("role") == "system"), None)
    user = next((m for m in messages if m.get("role") == "user"), None)
    if system is None or user is None:
        return body
    shared, found, own = str(system.get("content") or "").partition(SHARED_PREFIX_END)
    if not found:
        return body
    system["content"] = shared.rstrip()
    user["content"] = f"{SHARED_PREFIX_END}{own}\n\n{user.get('content') or ''}"
    return {**body, "messages": messages}


def assistant_message(reply: ScriptedReply) -> dict[str, Any]:
    """The answer as an OpenAI assistant message (what the template renders for that turn)."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
    return message


def forced_tokens(tokens: list[dict[str, Any]]) -> str:
    """A GBNF grammar that admits exactly these tokens, in order (`/tokenize` with pieces).

    A token is named by its id (llama.cpp's `<[id]>`), so the server decodes the very tokens a
    model would have. Byte tokens that hold part of a UTF-8 character (the tokenizer gives their
    piece as bytes) are matched as the character they complete instead: the grammar's token
    matcher rejects partial characters."""
    parts: list[str] = []
    pending = b""
    for token in tokens:
        piece = token["piece"]
        if isinstance(piece, str) and not pending:
            parts.append(f"<[{int(token['id'])}]>")
            continue
        pending += piece.encode() if isinstance(piece, str) else bytes(piece)
        try:
            text = pending.decode("utf-8")
        except UnicodeDecodeError:
            continue
        parts.append(_literal(text))
        pending = b""
    if pending:
        parts.append(_literal(pending.decode("utf-8", errors="replace")))
    return "root ::= " + (" ".join(parts) if parts else '""')


def _literal(text: str) -> str:
    """A GBNF string literal for `text`, every character escaped by its code point."""
    return '"' + "".join(f"\\U{ord(c):08X}" for c in text) + '"'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    proxy: EvaluatingProxy


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/props":
            self._json(200, self.server.proxy.props())
        elif path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "no route", "code": 404}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": "no route", "code": 404}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        proxy = self.server.proxy
        reply = exploring_reply(body, proxy.explore)
        stream = _Sse(self)
        try:
            if proxy.prime:
                with proxy._prime_lock:  # concurrent first turns wait for the one priming
                    proxy.prime_shared_prefix(body)
            evaluation = proxy.evaluate(body, reply, stream.progress)
        except Exception as error:  # the bench reports it; the agent sees a server error
            if proxy.gone:  # killed: the connection just closes, as a dead box's would
                self.close_connection = True
                return
            with proxy._lock:
                proxy.failures.append(f"{type(error).__name__}: {error}")
            if not stream.started:  # 400: the agent fails at once instead of retrying
                self._json(400, {"error": {"message": str(error)[:300], "code": 400}})
            return
        with contextlib.suppress(OSError):
            stream.answer(body, reply, evaluation)

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(data)


class _Sse:
    """The OpenAI SSE stream of one answer, opened at the first progress chunk or the answer."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.id = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        self.started = False

    def progress(self, progress: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._chunk({"choices": [], "prompt_progress": progress})

    def answer(self, body: dict[str, Any], reply: ScriptedReply, evaluation: Evaluation) -> None:
        self._delta({"role": "assistant", "content": None})
        for piece in _PIECE.findall(reply.reasoning):
            self._delta({"reasoning_content": piece})
        if reply.tool_calls:
            for index, (name, args) in enumerate(reply.tool_calls):
                call = {
                    "index": index,
                    "id": f"call_{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                self._delta({"tool_calls": [call]})
            finish = "tool_calls"
        else:
            for piece in _PIECE.findall(reply.content):
                self._delta({"content": piece})
            finish = "stop"
        timings = {
            "prompt_n": evaluation.prompt_n,
            "cache_n": evaluation.cache_n,
            "predicted_n": evaluation.predicted_n,
            "predicted_ms": max(1.0, (evaluation.end - evaluation.start) * 1000),
        }
        last = {"index": 0, "delta": {}, "finish_reason": finish}
        self._chunk({"choices": [last], "timings": timings})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {
                "prompt_tokens": evaluation.sent,
                "completion_tokens": evaluation.predicted_n,
                "total_tokens": evaluation.sent + evaluation.predicted_n,
            }
            self._chunk({"choices": [], "usage": usage})
        self._write(b"data: [DONE]\n\n")
        self.handler.wfile.write(b"0\r\n\r\n")
        self.handler.wfile.flush()

    def _delta(self, delta: dict[str, Any]) -> None:
        self._chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def _chunk(self, payload: dict[str, Any]) -> None:
        envelope = {"id": self.id, "object": "chat.completion.chunk", "model": "scripted"}
        self._write(f"data: {json.dumps({**envelope, **payload})}\n\n".encode())

    def _write(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            h = self.handler
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
        self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.handler.wfile.flush()
