"""How the scripted model writes an answer: as llama.cpp streams it (prompt progress when
asked, SSE chunks, tool-call fragments, the finish, `timings`, usage, [DONE]), or as one JSON
completion; with the
mid-stream faults and cut-offs of its fault plan."""

from __future__ import annotations

import itertools
import json
import re
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from runs.demo.faults import FaultKind, FaultRule
from runs.demo.scripts import ScriptedReply

if TYPE_CHECKING:
    from runs.demo.server import _Handler

MODEL_ID = "scripted"
FAULT_AFTER_PIECES = 3  # mid-stream faults strike after this many paced pieces
CUT_AFTER_PIECES = 3  # a cut-off answer (or tool call's arguments) stops after this many
PREFILL_BATCH = 64  # prompt tokens per progress chunk: llama.cpp sends one per batch it reads
_PIECE = re.compile(r"\S+\s*|\s+")  # one "token": a word and the whitespace after it
_MID_STREAM = {FaultKind.STALL_MID_STREAM, FaultKind.DROP_MID_STREAM, FaultKind.MALFORMED_CHUNK}
_CUTS = {FaultKind.LENGTH, FaultKind.CUT_TOOL_CALL}


def arguments(args: dict[str, Any]) -> str:
    """The JSON text of a tool call's arguments; `__raw__` injects text that is not JSON."""
    return str(args["__raw__"]) if "__raw__" in args else json.dumps(args)


def prompt_tokens(body: dict[str, Any]) -> int:
    return len(prompt_words(body))


def prompt_words(body: dict[str, Any]) -> list[str]:
    """The prompt's "tokens": its messages' words, in order."""
    words: list[str] = []
    for message in body.get("messages") or []:
        words += str(message.get("content") or "").split()
    return words


def common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Stream:
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
        prefill_seconds = self._prefill(prompt, cached)
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
            "prompt_ms": max(prefill_seconds * 1000, 1.0),
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

    def _prefill(self, prompt: int, cached: int) -> float:
        """Read the prompt's uncached part at the prefill rate, a batch at a time; with
        `return_progress`, say so as llama.cpp does: a chunk at 0% (the cached prefix already
        in) and one per batch, each with an empty assistant delta. Returns the seconds spent."""
        rate = self.scripted.prefill_rate
        progress = bool(self.body.get("return_progress"))
        started = time.monotonic()
        processed = cached
        while True:
            if progress:
                elapsed = int((time.monotonic() - started) * 1000)
                counts = {"total": prompt, "cache": cached, "processed": processed}
                choice = {"index": 0, "delta": {"role": "assistant", "content": None}}
                choice["finish_reason"] = None
                self._chunk({"choices": [choice], "prompt_progress": counts | {"time_ms": elapsed}})
            if processed >= prompt:
                return time.monotonic() - started
            batch = min(PREFILL_BATCH, prompt - processed)
            if rate:
                self.scripted.pause(batch / rate)
            processed += batch

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
            raw = arguments(args)
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
            self.scripted.pause(fault.stall_seconds)
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


def completion(body: dict[str, Any], reply: ScriptedReply) -> dict[str, Any]:
    """The non-streamed answer: one JSON completion."""
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": arguments(a)}}
        for i, (n, a) in enumerate(reply.tool_calls)
    ]
    message = {"role": "assistant", "content": reply.content, "reasoning_content": reply.reasoning}
    choice = {"index": 0, "message": message | ({"tool_calls": calls} if calls else {})}
    choice["finish_reason"] = "tool_calls" if calls else "stop"
    prompt, completion = prompt_tokens(body), len(_PIECE.findall(reply.reasoning + reply.content))
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {"object": "chat.completion", "model": MODEL_ID, "choices": [choice], "usage": usage}
