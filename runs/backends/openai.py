"""The one place the orchestrator talks to a model: OpenAI-compatible streaming over httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from runs.backends.base import (
    BackendError,
    BackendEvent,
    EndpointConfig,
    FirstByte,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCall,
    ToolCallStarted,
    TurnResult,
    Usage,
)

MAX_BACKOFF = 8.0
MAX_RETRY_AFTER = 30.0


class _Retryable(Exception):
    """A fault worth another attempt; `delay` overrides the backoff (Retry-After)."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


@dataclass
class _Turn:
    """Accumulates one streamed answer: text, reasoning and tool-call fragments by index."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    usage: Usage | None = None
    finish_reason: str | None = None
    started: bool = False

    def result(self) -> TurnResult:
        calls = tuple(
            ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
            for i, c in sorted(self.calls.items())
            if c["name"]
        )
        return TurnResult(
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            tool_calls=calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
        )


class OpenAICompatibleBackend:
    """Streams /chat/completions; retries transient faults a bounded number of times."""

    def __init__(self, config: EndpointConfig, *, client: httpx.AsyncClient | None = None):
        self.config = config
        self._own_client = client is None
        # httpx's read timeout is only the outer bound; the first-byte and between-chunk
        # limits are applied per line in _attempt, where they can be told apart.
        slowest = max(config.first_byte_timeout, config.read_timeout)
        timeout = httpx.Timeout(
            connect=config.connect_timeout,
            read=slowest,
            write=config.read_timeout,
            pool=slowest,
        )
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.client = client or httpx.AsyncClient(timeout=timeout, headers=headers)

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    async def stream_turn(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
    ) -> AsyncIterator[BackendEvent]:
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
        attempts = self.config.max_retries + 1
        for attempt in range(1, attempts + 1):
            turn = _Turn()
            try:
                async for event in self._attempt(body, turn):
                    yield event
                yield turn.result()
                return
            except _Retryable as fault:
                if attempt == attempts:
                    raise BackendError(
                        f"{fault.reason} (model server at {self.config.base_url}, "
                        f"{attempts} attempts)"
                    ) from None
                delay = fault.delay
                if delay is None:
                    delay = min(MAX_BACKOFF, self.config.backoff_base * 2 ** (attempt - 1))
                yield Retrying(attempt=attempt, reason=fault.reason, delay=delay)
                await asyncio.sleep(delay)

    async def _attempt(self, body: dict[str, Any], turn: _Turn) -> AsyncIterator[BackendEvent]:
        request = self.client.build_request(
            "POST", f"{self.config.base_url}/chat/completions", json=body
        )
        try:
            try:
                # The first byte may take long (model loading, prefill, a queue inside the
                # server); once streaming, silence longer than read_timeout is a stall.
                response = await asyncio.wait_for(
                    self.client.send(request, stream=True), self.config.first_byte_timeout
                )
            except (httpx.RemoteProtocolError, httpx.ReadError):
                raise _Retryable(
                    "the model server closed the connection without answering"
                ) from None
            except TimeoutError:
                limit = self.config.first_byte_timeout
                raise _Retryable(
                    f"the model went silent before the first byte ({limit:g}s)"
                ) from None
            try:
                if response.status_code != 200:
                    await self._raise_for_status(response)
                async for event in self._read_stream(response, turn):
                    yield event
            finally:
                await response.aclose()
        except httpx.ConnectError:
            raise _Retryable("the model server refused the connection") from None
        except httpx.ConnectTimeout:
            raise _Retryable("connecting to the model server timed out") from None
        except httpx.ReadTimeout:
            raise _Retryable("the model server stopped responding") from None
        except (httpx.RemoteProtocolError, httpx.ReadError):
            raise _Retryable("the model server dropped the connection mid-stream") from None
        if turn.finish_reason is None:
            raise _Retryable("the stream ended before the model finished its answer")

    async def _read_stream(
        self, response: httpx.Response, turn: _Turn
    ) -> AsyncIterator[BackendEvent]:
        lines = response.aiter_lines()
        while True:
            limit = self.config.read_timeout if turn.started else self.config.first_byte_timeout
            try:
                line = await asyncio.wait_for(anext(lines), limit)
            except StopAsyncIteration:
                return
            except TimeoutError:
                what = "mid-stream" if turn.started else "before the first byte"
                raise _Retryable(f"the model went silent {what} ({limit:g}s)") from None
            for event in self._handle_line(line, turn):
                yield event
            if line.strip() == "data: [DONE]":
                return

    async def _raise_for_status(self, response: httpx.Response) -> None:
        text = (await response.aread()).decode("utf-8", errors="replace")
        message = _error_message(text) or response.reason_phrase
        status = response.status_code
        if status == 429:
            raise _Retryable(f"the model server is busy (429: {message})", _retry_after(response))
        if status >= 500:
            raise _Retryable(f"the model server failed ({status}: {message})")
        raise BackendError(
            f"the model server at {self.config.base_url} rejected the request ({status}: {message})"
        )

    def _handle_line(self, line: str, turn: _Turn) -> list[BackendEvent]:
        line = line.strip()
        if not line.startswith("data:"):
            return []  # blank separators, comments (": keep-alive"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return []
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            raise _Retryable("the model server sent a malformed chunk") from None
        if not isinstance(chunk, dict):
            raise _Retryable("the model server sent a malformed chunk")
        if isinstance(chunk.get("error"), dict | str):
            raise _Retryable(f"the model server reported an error: {_error_text(chunk['error'])}")
        events: list[BackendEvent] = []
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
            turn.usage = Usage(
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        for choice in chunk.get("choices") or []:
            events += self._handle_choice(choice, turn)
        return events

    def _handle_choice(self, choice: dict[str, Any], turn: _Turn) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        content = delta.get("content")
        calls = delta.get("tool_calls") or []
        if (reasoning or content or calls) and not turn.started:
            turn.started = True
            events.append(FirstByte())
        if reasoning:
            turn.reasoning.append(reasoning)
            events.append(ReasoningDelta(text=reasoning))
        if content:
            turn.content.append(content)
            events.append(TextDelta(text=content))
        for fragment in calls:
            events += _merge_tool_call(fragment, turn)
        if choice.get("finish_reason"):
            turn.finish_reason = choice["finish_reason"]
        return events


def _merge_tool_call(fragment: dict[str, Any], turn: _Turn) -> list[BackendEvent]:
    """Tool calls arrive in pieces: id and name once, arguments spread over many chunks."""
    index = int(fragment.get("index") or 0)
    call = turn.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    function = fragment.get("function") or {}
    events: list[BackendEvent] = []
    if fragment.get("id"):
        call["id"] = fragment["id"]
    if function.get("name") and not call["name"]:
        call["name"] = function["name"]
        events.append(ToolCallStarted(index=index, name=call["name"]))
    if function.get("arguments"):
        call["arguments"] += function["arguments"]
    return events


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(raw))) if raw else None
    except ValueError:
        return None


def _error_message(text: str) -> str:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return text.strip()[:200]
    if isinstance(payload, dict) and "error" in payload:
        return _error_text(payload["error"])
    return text.strip()[:200]


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)[:200]
    return str(error)[:200]


async def probe_models(base_url: str, timeout: float = 2.0) -> list[str]:
    """The model ids a server lists; a clear BackendError when nothing answers."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{base_url.rstrip('/')}/models")
    except httpx.HTTPError as exc:
        raise BackendError(f"nothing answers at {base_url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise BackendError(f"{base_url}/models answered {response.status_code}")
    try:
        data = response.json().get("data") or []
    except (ValueError, AttributeError):
        raise BackendError(f"{base_url}/models did not answer with JSON") from None
    return [str(item.get("id")) for item in data if isinstance(item, dict)]
