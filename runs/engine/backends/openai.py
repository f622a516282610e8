"""The one place the orchestrator talks to a model: OpenAI-compatible streaming over httpx.

Works with llama.cpp's server, llama-swap, vLLM, Ollama's /v1 and the scripted model. Every
fault a local server shows (refused, busy, crashed, stalled, cut off, garbled) becomes either a
bounded retry of the whole turn, announced by a `Retrying` event, or a `BackendError` whose
message a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from runs.engine import crashpoints
from runs.engine.backends.base import (
    BackendError,
    BackendEvent,
    EndpointConfig,
    FirstByte,
    ReasoningDelta,
    Retrying,
    StructuredOutputRejected,
    TextDelta,
    ToolCall,
    ToolCallStarted,
    TurnResult,
    Usage,
)

MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0
_DNS_HINTS = ("name or service not known", "nodename nor servname", "name resolution")


class _Retryable(Exception):
    """A fault worth another attempt; `delay` overrides the backoff (Retry-After)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


@dataclass
class _Turn:
    """One attempt's answer as it accumulates: text, reasoning, tool-call fragments by index."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    last_index: int = 0
    usage: Usage | None = None
    finish_reason: str | None = None
    answered: bool = False  # response headers arrived
    started: bool = False  # the first content/reasoning/tool byte arrived
    done: bool = False  # `data: [DONE]` arrived

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    def result(self) -> TurnResult:
        calls = tuple(
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
            for i, c in sorted(self.calls.items())
            if c["name"]  # a nameless call cannot be run; servers do not send one on purpose
        )
        return TurnResult(
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            tool_calls=calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
        )


class OpenAICompatibleBackend:
    """Streams `POST {base_url}/chat/completions`; retries transient faults a bounded number of
    times, restarting the whole turn."""

    def __init__(self, config: EndpointConfig, *, client: httpx.AsyncClient | None = None):
        self.config = config
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(timeout=_httpx_timeout(config))
        self._url = f"{config.base_url.rstrip('/')}/chat/completions"
        self.accepts_response_format = True

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    async def stream_turn(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        response_format: dict[str, Any] | None = None,
    ) -> AsyncIterator[BackendEvent]:
        body = self._body(messages, tools, max_tokens)
        if response_format is not None:
            body["response_format"] = response_format
        attempts = self.config.max_retries + 1
        for attempt in range(1, attempts + 1):
            turn = _Turn()
            fault: _Retryable | None = None
            try:
                # aclosing: if our consumer stops early, the response is closed now, not at GC.
                async with contextlib.aclosing(self._attempt(body, turn)) as events:
                    async for event in events:
                        yield event
            except _Retryable as exc:
                fault = exc
            if fault is None:
                yield turn.result()
                return
            if attempt == attempts:
                raise BackendError(self._give_up(fault, attempts))
            delay = self._delay(fault, attempt)
            yield Retrying(attempt=attempt, reason=fault.reason, delay=delay)
            await asyncio.sleep(delay)  # cancellation interrupts this like any other await

    def _body(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if max_tokens:
            body["max_tokens"] = max_tokens
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"
        return body

    def _give_up(self, fault: _Retryable, attempts: int) -> str:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        return f"{fault.reason} (model server at {self.config.base_url}, {tries})"

    def _delay(self, fault: _Retryable, attempt: int) -> float:
        if fault.delay is not None:
            return fault.delay
        return min(MAX_BACKOFF, self.config.backoff_base * 2 ** (attempt - 1))

    async def _attempt(
        self, body: dict[str, Any], turn: _Turn
    ) -> AsyncGenerator[BackendEvent, None]:
        # One deadline covers connecting, the headers and the first byte: all of it is "queued".
        first_byte_deadline = asyncio.get_running_loop().time() + self.config.first_byte_timeout
        try:
            response = await self._send(body, first_byte_deadline)
            try:
                turn.answered = True
                await self._check_status(response, structured="response_format" in body)
                async for event in self._events(response, turn, first_byte_deadline):
                    yield event
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            if not turn.complete:
                raise _transport_fault(exc, turn, self.config) from None
            # finish_reason arrived: only usage or [DONE] were lost, the answer is whole.
        if not turn.complete:
            raise _Retryable("the stream ended before the model finished its answer")

    async def _send(self, body: dict[str, Any], deadline: float) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        request = self.client.build_request("POST", self._url, json=body, headers=headers)
        try:
            async with asyncio.timeout_at(deadline):
                return await self.client.send(request, stream=True)
        except TimeoutError:
            raise _Retryable(self._silence(started=False)) from None

    async def _check_status(self, response: httpx.Response, *, structured: bool) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        text = (await response.aread()).decode("utf-8", errors="replace")
        message = _error_message(text) or response.reason_phrase
        if status == 429:
            raise _Retryable(f"the model server is busy (429: {message})", _retry_after(response))
        if status >= 500:
            raise _Retryable(
                f"the model server failed ({status}: {message})", _retry_after(response)
            )
        # Other 4xx (unknown model, context too long, bad request) will not get better.
        if structured and not _about_length(message):
            # Most likely the schema or response_format itself: remembered, so every later
            # turn on this server asks in prose; the caller asks this one again in prose.
            self.accepts_response_format = False
            raise StructuredOutputRejected(
                f"the model server at {self.config.base_url} refused response_format "
                f"({status}: {message})"
            )
        raise BackendError(
            f"the model server at {self.config.base_url} rejected the request ({status}: {message})"
        )

    async def _events(
        self, response: httpx.Response, turn: _Turn, first_byte_deadline: float
    ) -> AsyncIterator[BackendEvent]:
        lines = response.aiter_lines()
        try:
            while not turn.done:
                line = await self._next_line(lines, turn, first_byte_deadline)
                if line is None:
                    return
                for event in _handle_line(line, turn):
                    yield event
        finally:
            aclose = getattr(lines, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _next_line(
        self, lines: AsyncIterator[str], turn: _Turn, first_byte_deadline: float
    ) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.read_timeout if turn.started else first_byte_deadline
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(lines)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise _Retryable(self._silence(started=turn.started)) from None

    def _silence(self, *, started: bool) -> str:
        if started:
            return f"the model went silent mid-stream (nothing for {self.config.read_timeout:g}s)"
        return f"the model went silent before the first byte ({self.config.first_byte_timeout:g}s)"


def _httpx_timeout(config: EndpointConfig) -> httpx.Timeout:
    # httpx's read limit is only a backstop: the first-byte and between-chunk limits are
    # applied with asyncio deadlines in the backend, where they can be told apart.
    slowest = max(config.first_byte_timeout, config.read_timeout) + 1.0
    return httpx.Timeout(connect=config.connect_timeout, read=slowest, write=slowest, pool=slowest)


def _transport_fault(exc: httpx.HTTPError, turn: _Turn, config: EndpointConfig) -> _Retryable:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return _Retryable(f"the model server {_connect_failure(exc, config.connect_timeout)}")
    if isinstance(exc, httpx.TimeoutException):
        return _Retryable("the model server stopped responding")
    if isinstance(exc, httpx.DecodingError):
        return _Retryable("the model server sent a response that could not be decoded")
    if not turn.answered:
        return _Retryable("the model server closed the connection without answering")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return _Retryable("the model server dropped the connection mid-stream")
    return _Retryable(f"the connection to the model server failed ({type(exc).__name__})")


def _connect_failure(exc: httpx.HTTPError, connect_timeout: float) -> str:
    """How connecting failed, as the end of a sentence starting "the model server …"."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"did not accept the connection within {connect_timeout:g}s"
    if any(hint in str(exc).lower() for hint in _DNS_HINTS):
        return "host name could not be resolved"
    return "refused the connection"


def _handle_line(line: str, turn: _Turn) -> list[BackendEvent]:
    line = line.strip()
    if not line.startswith("data:"):
        return []  # blank separators, comments (": keep-alive"), `event:` and `id:` fields
    crashpoints.reached("model_chunk", "after")
    data = line[5:].strip()
    if data == "[DONE]":
        turn.done = True
        return []
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise _Retryable("the model server sent a malformed chunk (not JSON)") from None
    if not isinstance(chunk, dict):
        raise _Retryable("the model server sent a malformed chunk (not a JSON object)")
    if chunk.get("error"):
        _raise_stream_error(chunk["error"])
    if isinstance(usage := chunk.get("usage"), dict):  # the last chunk, with empty choices
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        turn.usage = Usage(prompt_tokens=int(prompt or 0), completion_tokens=int(completion or 0))
    events: list[BackendEvent] = []
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict):
            events += _handle_choice(choice, turn)
    return events


def _handle_choice(choice: dict[str, Any], turn: _Turn) -> list[BackendEvent]:
    events: list[BackendEvent] = []
    delta = choice.get("delta") or {}
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    content = delta.get("content")
    calls = delta.get("tool_calls") or []
    if (reasoning or content or calls) and not turn.started:
        turn.started = True
        events.append(FirstByte())
    if isinstance(reasoning, str) and reasoning:
        turn.reasoning.append(reasoning)
        events.append(ReasoningDelta(text=reasoning))
    if isinstance(content, str) and content:
        turn.content.append(content)
        events.append(TextDelta(text=content))
    for fragment in calls:
        if isinstance(fragment, dict):
            events += _merge_tool_call(fragment, turn)
    if choice.get("finish_reason"):
        turn.finish_reason = str(choice["finish_reason"])
    return events


def _merge_tool_call(fragment: dict[str, Any], turn: _Turn) -> list[BackendEvent]:
    """Tool calls arrive in pieces: id and name once, the arguments spread over many chunks."""
    index = _fragment_index(fragment, turn)
    call = turn.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = fragment.get("function") or {}
    events: list[BackendEvent] = []
    if fragment.get("id") and not call["id"]:
        call["id"] = str(fragment["id"])
    if function.get("name") and not call["name"]:
        call["name"] = str(function["name"])
        events.append(ToolCallStarted(index=index, name=call["name"]))
    arguments = function.get("arguments")
    if isinstance(arguments, dict):  # a few servers send an object, not JSON text
        arguments = json.dumps(arguments)
    if arguments:
        call["arguments"] += str(arguments)
    return events


def _fragment_index(fragment: dict[str, Any], turn: _Turn) -> int:
    """The call a fragment belongs to; servers that omit `index` mean "the current call"."""
    index = fragment.get("index")
    if not isinstance(index, int):
        known_ids = {c["id"] for c in turn.calls.values()}
        new_call = fragment.get("id") and fragment["id"] not in known_ids
        index = len(turn.calls) if new_call else turn.last_index
    turn.last_index = index
    return index


def _raise_stream_error(error: Any) -> None:
    """An error sent inside the stream (llama.cpp does this); a 4xx code will not get better."""
    message = _error_text(error)
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code < 500 and code != 429:
        raise BackendError(f"the model server rejected the request mid-stream ({code}: {message})")
    raise _Retryable(f"the model server reported an error mid-stream: {message}")


def _about_length(message: str) -> bool:
    """A 4xx about the context or the request's size, not about response_format."""
    lowered = message.lower()
    return "context" in lowered or "too long" in lowered or "too large" in lowered


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, capped so a server cannot park an agent for long."""
    try:
        seconds = float(response.headers.get("retry-after") or "")
    except ValueError:
        return None  # absent, or an HTTP date: our own backoff will do
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _error_message(text: str) -> str:
    """The server's own words from an error body: `{"error": {"message": …}}` or plain text."""
    with contextlib.suppress(json.JSONDecodeError):
        payload = json.loads(text)
        if isinstance(payload, dict) and (payload.get("error") or payload.get("message")):
            return _error_text(payload.get("error") or payload)
    return text.strip()[:200]


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)[:200]
    return str(error)[:200]


async def probe_models(base_url: str, timeout: float = 2.0) -> list[str]:
    """The model ids a server lists at GET {base_url}/models; BackendError if nothing answers."""
    url = f"{base_url.rstrip('/')}/models"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url)
    except httpx.ConnectError as exc:
        raise BackendError(
            f"nothing answers at {base_url} (the server {_connect_failure(exc, timeout)})"
        ) from None
    except httpx.HTTPError as exc:
        why = f"no answer within {timeout:g}s" if isinstance(exc, httpx.TimeoutException) else exc
        raise BackendError(f"nothing answers at {base_url} ({why})") from None
    if response.status_code != 200:
        message = _error_message(response.text) or response.reason_phrase
        raise BackendError(f"{url} answered HTTP {response.status_code} ({message})")
    try:
        data = response.json().get("data") or []
    except (ValueError, AttributeError):
        raise BackendError(f"{url} did not answer with a JSON model list") from None
    return [str(item["id"]) for item in data if isinstance(item, dict) and item.get("id")]
