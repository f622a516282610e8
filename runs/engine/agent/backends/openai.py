"""The one place the orchestrator talks to a model: OpenAI-compatible streaming over httpx.

Works with llama.cpp's server, llama-swap, vLLM, Ollama's /v1 and the scripted model. Every
fault a local server shows (refused, busy, crashed, restarting, loading, stalled, cut off,
garbled) becomes either a retry of the whole turn, announced by a `Retrying` event, while the
retry budget (a time) lasts, or a `BackendError` whose message a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from runs.engine import crashpoints
from runs.engine.agent.backends.base import (
    BackendError,
    BackendEvent,
    EndpointConfig,
    FirstByte,
    GaveUp,
    PromptProgress,
    ReasoningDelta,
    Retrying,
    RetryKind,
    ServerProps,
    StructuredOutputRejected,
    TextDelta,
    Timings,
    ToolCall,
    ToolCallStarted,
    Tries,
    TurnResult,
    Usage,
    estimate_tokens,
)

MAX_RETRY_AFTER = 60.0
MAX_COUNT = 10_000_000  # a server's token counts are believed up to this, per turn
_DNS_HINTS = ("name or service not known", "nodename nor servname", "name resolution")
_UNAVAILABLE_STATUS = {502, 503, 504}  # a proxy without its upstream; llama.cpp loading


class _ProgressRefused(Exception):
    """The server rejected `return_progress` (a strict OpenAI-compatible one): ask without it."""


class _Retryable(Exception):
    """A fault worth another attempt; `delay` overrides the backoff (Retry-After)."""

    def __init__(
        self,
        reason: str,
        delay: float | None = None,
        kind: str = RetryKind.FAULT,
        *,
        lost: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.kind = kind
        self.lost = lost  # the endpoint itself went away (Retrying.lost_endpoint)


@dataclass
class _Turn:
    """One attempt's answer as it accumulates: text, reasoning, tool-call fragments by index."""

    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    last_index: int = 0
    usage: Usage | None = None
    timings: Timings | None = None
    finish_reason: str | None = None
    progress: PromptProgress | None = None  # the last prompt progress passed on
    pieces: int = 0  # content, reasoning and tool-call fragments streamed (about one token each)
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
            timings=self.timings,
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one reads the CA bundle (milliseconds of
    CPU on the event loop that also serves the web pages), and every step opens a client."""
    return ssl.create_default_context()


def new_client(timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, verify=_tls_context())


class OpenAICompatibleBackend:
    """Streams `POST {base_url}/chat/completions`; retries transient faults, restarting the
    whole turn, until the retry budget (seconds since the turn's first fault) is spent."""

    def __init__(self, config: EndpointConfig, *, client: httpx.AsyncClient | None = None):
        self.config = config
        self._own_client = client is None
        self.client = client or new_client(_httpx_timeout(config))
        self._url = f"{config.base_url.rstrip('/')}/chat/completions"
        self.accepts_response_format = True
        # llama.cpp streams its prompt progress when asked; others ignore the flag, and one
        # that rejects it is asked without it from then on.
        self.sends_progress = True

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
        tool_choice: str = "auto",
        tries: Tries | None = None,
    ) -> AsyncGenerator[BackendEvent, None]:
        body = self._body(messages, tools, max_tokens, tool_choice)
        if response_format is not None:
            body["response_format"] = response_format
        loop = asyncio.get_running_loop()
        tries = Tries() if tries is None else tries  # the budget rule reads and writes these
        while True:
            tries.made += 1
            attempt = tries.made
            turn = _Turn()
            fault: _Retryable | None = None
            try:
                # aclosing: if our consumer stops early, the response is closed now, not at GC.
                async with contextlib.aclosing(self._attempt(body, turn)) as events:
                    async for event in events:
                        yield event
            except _Retryable as exc:
                fault = exc
            except _ProgressRefused:
                body.pop("return_progress", None)  # the same request without it: not a fault
                tries.made -= 1
                continue
            if fault is None:
                yield turn.result()
                return
            if fault.lost:
                tries.unanswered.add(self.config.base_url)
            else:
                tries.unanswered.discard(self.config.base_url)
            now = loop.time()
            if tries.first_fault is None:
                tries.first_fault = now
            first_fault = tries.first_fault
            left = self.config.retry_seconds - (now - first_fault)
            retries_left = self.config.max_retries is None or attempt <= self.config.max_retries
            if left <= 0 or not retries_left:
                raise self._give_up(fault, attempt, now - first_fault)
            delay = min(self._delay(fault, attempt), left)
            yield Retrying(
                attempt=attempt,
                reason=fault.reason,
                delay=delay,
                kind=fault.kind,
                budget_left=max(0.0, left - delay),
                discarded_tokens=turn.pieces,
                discarded_prompt=estimate_tokens(messages) if turn.started else 0,
                lost_endpoint=fault.lost,
            )
            # A consumer that stops reading at the Retrying (the agent, which gives its slot
            # back meanwhile) waits the delay itself; cancellation interrupts this as any await.
            await asyncio.sleep(delay)

    def _body(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        tool_choice: str = "auto",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.sends_progress:
            body["return_progress"] = True
        if max_tokens:
            body["max_tokens"] = max_tokens
        if tools:
            body["tools"] = tools
            body["tool_choice"] = tool_choice
        return body

    def _give_up(self, fault: _Retryable, made: int, seconds: float) -> GaveUp:
        # "tries", not "attempts": an attempt is the step's (the Method table counts them),
        # and one attempt's turn may take several tries at the server.
        tries = f"{made} {'try' if made == 1 else 'tries'}"
        over = f" over {seconds:.1f}s" if seconds >= 1 else ""
        return GaveUp(
            reason=fault.reason, url=self.config.base_url, tries=tries + over, lost=fault.lost
        )

    def _delay(self, fault: _Retryable, attempt: int) -> float:
        if fault.delay is not None:
            return fault.delay
        return min(self.config.max_backoff, self.config.backoff_base * 2 ** (attempt - 1))

    async def _attempt(
        self, body: dict[str, Any], turn: _Turn
    ) -> AsyncGenerator[BackendEvent, None]:
        # One deadline covers connecting, the headers and the first byte: all of it is "queued".
        first_byte_deadline = asyncio.get_running_loop().time() + self.config.first_byte_timeout
        try:
            response = await self._send(body, first_byte_deadline)
            try:
                turn.answered = True
                await self._check_status(
                    response,
                    structured="response_format" in body,
                    progress="return_progress" in body,
                )
                async for event in self._events(response, turn, first_byte_deadline):
                    yield event
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            if not turn.complete:
                raise _transport_fault(exc, turn, self.config) from None
            # finish_reason arrived: only usage or [DONE] were lost, the answer is whole.
        if not turn.complete:
            raise _Retryable("the stream ended before the model finished its answer", lost=True)

    async def _send(self, body: dict[str, Any], deadline: float) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        request = self.client.build_request("POST", self._url, json=body, headers=headers)
        try:
            async with asyncio.timeout_at(deadline):
                return await self.client.send(request, stream=True)
        except TimeoutError:
            raise _Retryable(self._silence(started=False), lost=True) from None

    async def _check_status(
        self, response: httpx.Response, *, structured: bool, progress: bool
    ) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        text = (await response.aread()).decode("utf-8", errors="replace")
        message = _error_message(text) or response.reason_phrase
        if status == 429:  # backpressure: wait as long as the server asks
            raise _Retryable(
                f"the model server is busy (429: {message})",
                _retry_after(response),
                RetryKind.BUSY,
            )
        if status in _UNAVAILABLE_STATUS:
            raise _Retryable(
                f"the model server is unavailable ({status}: {message})",
                _retry_after(response),
                RetryKind.UNAVAILABLE,
            )
        if status >= 500:
            raise _Retryable(
                f"the model server failed ({status}: {message})", _retry_after(response)
            )
        # Other 4xx (unknown model, context too long, bad request) will not get better.
        if progress and "return_progress" in message.lower():
            self.sends_progress = False  # remembered: every later turn asks without it
            raise _ProgressRefused
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
        # Network chunks split into lines here: one await per chunk (an SSE event and its
        # blank line arrive together), not per line through httpx's text and line layers.
        chunks = response.aiter_bytes()
        watchdog = _Watchdog(asyncio.get_running_loop())
        partial = b""  # a line whose end has not arrived yet
        try:
            while not turn.done:
                chunk = await self._next_chunk(chunks, turn, first_byte_deadline, watchdog)
                if chunk is None:  # the stream ended: its last line may lack a newline
                    if partial:
                        for event in _handle_line(_decode(partial), turn):
                            yield event
                    return
                if b"\r" in chunk:  # SSE ends lines with CRLF, LF or CR alike
                    chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    for event in _handle_line(_decode(line), turn):
                        yield event
                    if turn.done:
                        break
        finally:
            watchdog.close()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _next_chunk(
        self,
        chunks: AsyncIterator[bytes],
        turn: _Turn,
        first_byte_deadline: float,
        watchdog: _Watchdog,
    ) -> bytes | None:
        if turn.started:
            deadline = watchdog.loop.time() + self.config.read_timeout
        else:
            deadline = first_byte_deadline
        watchdog.watch(deadline)
        try:
            return await anext(chunks)
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError:
            if watchdog.expired_here():
                raise _Retryable(self._silence(started=turn.started), lost=True) from None
            raise
        finally:
            watchdog.unwatch()

    def _silence(self, *, started: bool) -> str:
        if started:
            return f"the model went silent mid-stream (nothing for {self.config.read_timeout:g}s)"
        return f"the model went silent before the first byte ({self.config.first_byte_timeout:g}s)"


class _Watchdog:
    """One stream's read deadline, enforced by one timer that moves only when it fires early
    or the deadline comes earlier than it (from the first-byte limit to the read limit).

    An `asyncio.timeout_at` per SSE line made and cancelled a timer per line (3 us each, 10-15%
    of the event loop's own time at 64 streams). Here a line costs a few attribute writes, and
    the timer fires about once per read limit while a stream flows. Only a read is timed: while
    the stream's consumer handles an event the stream is not waiting, and nothing fires. The
    cancellation is counted like `asyncio.Timeout`'s, so a cancellation from outside arriving
    at the same time is never mistaken for a stall, nor swallowed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._deadline = math.inf  # the current read's
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._reader: asyncio.Task[Any] | None = None  # the task waiting on a read, if any
        self._cancelling = 0  # its cancel requests before this read
        self._fired = False

    def watch(self, deadline: float) -> None:
        """The read about to start must end by `deadline`."""
        self._deadline = deadline
        self._fired = False
        self._reader = asyncio.current_task()
        self._cancelling = self._reader.cancelling() if self._reader else 0
        if deadline < self._timer_at:
            self._arm(deadline)

    def unwatch(self) -> None:
        self._reader = None

    def expired_here(self) -> bool:
        """Whether the CancelledError being handled is this watchdog's alone (then it is
        consumed: the read timed out); False leaves it to propagate as a real cancellation."""
        if not self._fired or self._reader is None:
            return False
        self._fired = False
        return self._reader.uncancel() <= self._cancelling

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at, self._reader = None, math.inf, None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        fired_at, self._timer, self._timer_at = self._timer_at, None, math.inf
        if self._reader is None:
            return  # between reads: the next read arms the timer again
        if self._deadline > fired_at:
            self._arm(self._deadline)  # lines arrived since: wait for the read's own deadline
            return
        self._fired = True
        self._reader.cancel()


def _httpx_timeout(config: EndpointConfig) -> httpx.Timeout:
    # httpx's read limit is only a backstop: the first-byte and between-chunk limits are
    # applied with asyncio deadlines in the backend, where they can be told apart.
    slowest = max(config.first_byte_timeout, config.read_timeout) + 1.0
    return httpx.Timeout(connect=config.connect_timeout, read=slowest, write=slowest, pool=slowest)


def _transport_fault(exc: httpx.HTTPError, turn: _Turn, config: EndpointConfig) -> _Retryable:
    """Every transport fault is the endpoint going away (lost): its answers never are."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return _Retryable(
            f"the model server {_connect_failure(exc, config.connect_timeout)}",
            kind=RetryKind.UNAVAILABLE,
            lost=True,
        )
    if isinstance(exc, httpx.TimeoutException):
        return _Retryable("the model server stopped responding", lost=True)
    if isinstance(exc, httpx.DecodingError):
        return _Retryable("the model server sent a response that could not be decoded")
    if not turn.answered:
        return _Retryable(
            "the model server closed the connection without answering",
            kind=RetryKind.UNAVAILABLE,
            lost=True,
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return _Retryable("the model server dropped the connection mid-stream", lost=True)
    return _Retryable(
        f"the connection to the model server failed ({type(exc).__name__})", lost=True
    )


def _connect_failure(exc: httpx.HTTPError, connect_timeout: float) -> str:
    """How connecting failed, as the end of a sentence starting "the model server …"."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"did not accept the connection within {connect_timeout:g}s"
    if any(hint in str(exc).lower() for hint in _DNS_HINTS):
        return "host name could not be resolved"
    return "refused the connection"


def _decode(line: bytes) -> str:
    # SSE is UTF-8; a newline byte never occurs inside a UTF-8 sequence, so splitting the
    # bytes at newlines first is safe. What is not UTF-8 becomes U+FFFD (hostile input).
    return line.decode("utf-8", errors="replace")


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
        turn.usage = _usage(usage)
    if isinstance(timings := chunk.get("timings"), dict):  # llama.cpp, on its last chunks
        turn.timings = _timings(timings)
    events: list[BackendEvent] = []
    if not turn.started and (progress := _progress(chunk.get("prompt_progress"), turn)):
        events.append(progress)
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
        turn.pieces += 1
        events.append(ReasoningDelta(text=reasoning))
    if isinstance(content, str) and content:
        turn.content.append(content)
        turn.pieces += 1
        events.append(TextDelta(text=content))
    for fragment in calls if isinstance(calls, list) else []:
        if isinstance(fragment, dict):
            turn.pieces += 1
            events += _merge_tool_call(fragment, turn)
    if choice.get("finish_reason"):
        turn.finish_reason = str(choice["finish_reason"])[:40]
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


def _progress(value: Any, turn: _Turn) -> PromptProgress | None:
    """llama.cpp's `prompt_progress` ({total, cache, processed, time_ms}, one per batch it
    evaluates), made sane, when it says more than the last one passed on; else None.

    Hostile input: what is not a count counts as 0, counts are clamped so that 0 <= cache <=
    processed <= total, a total of 0 means nothing to show, and `processed` never runs
    backwards (a chunk that repeats or goes back is dropped).
    """
    if not isinstance(value, dict):
        return None
    total = _count(value.get("total"))
    if total <= 0:
        return None
    processed = min(_count(value.get("processed")), total)
    cache = min(_count(value.get("cache")), processed)
    last = turn.progress
    if last is not None and processed <= last.processed:
        return None
    turn.progress = PromptProgress(total=total, cache=cache, processed=processed)
    return turn.progress


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
        cached_tokens=None if cached is None else _count(cached),
    )


def _timings(timings: dict[str, Any]) -> Timings:
    rate = _seconds_or_rate(timings.get("predicted_per_second"))
    return Timings(
        prompt_n=_count(timings.get("prompt_n")),
        cache_n=_count(timings.get("cache_n")),
        predicted_n=_count(timings.get("predicted_n")),
        predicted_ms=_seconds_or_rate(timings.get("predicted_ms")) or 0.0,
        predicted_per_second=rate,
        prompt_ms=_seconds_or_rate(timings.get("prompt_ms")) or 0.0,
    )


def _count(value: Any) -> int:
    """A token count a server sent: a whole number in range, else 0 (it is hostile input)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if not math.isfinite(value):
        return 0
    return int(min(max(value, 0), MAX_COUNT))


def _seconds_or_rate(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(min(max(value, 0.0), 1e9))


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, capped so a server cannot park an agent for long."""
    try:
        seconds = float(response.headers.get("retry-after") or "")
    except ValueError:
        return None  # absent, or an HTTP date: our own backoff will do
    if not math.isfinite(seconds):
        return None
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
        async with new_client(timeout) as client:
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


def server_root(base_url: str) -> str:
    """The server's own root for a /v1 base URL (llama.cpp serves /props beside /v1)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


async def probe_props(base_url: str, model: str, timeout: float = 3.0) -> ServerProps | None:
    """How many slots the server has, from llama.cpp's `GET /props`; None when it does not say.

    Tried in order: `/props?model=NAME` at the server's root (llama.cpp itself, and llama-swap,
    which routes it to that model's server), then `/upstream/NAME/props` (llama-swap's direct
    route to a model's server). Either may make llama-swap load the model; the short timeout
    keeps that from holding a step up (the slots are asked again later).
    """
    root = server_root(base_url)
    urls = [
        (f"{root}/props", {"model": model}),
        (f"{root}/upstream/{model}/props", None),
    ]
    try:
        async with new_client(timeout) as client:
            for url, params in urls:
                props = await _props_at(client, url, params)
                if props is not None:
                    return props
    except httpx.HTTPError:
        return None
    return None


async def _props_at(
    client: httpx.AsyncClient, url: str, params: dict[str, str] | None
) -> ServerProps | None:
    response = await client.get(url, params=params)
    if response.status_code != 200:
        return None
    try:
        payload = response.json()
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    slots = _count(payload.get("total_slots"))
    if not 1 <= slots <= 1024:
        return None
    settings = payload.get("default_generation_settings")
    n_ctx = _count(settings.get("n_ctx")) if isinstance(settings, dict) else 0
    return ServerProps(total_slots=slots, n_ctx=n_ctx or None, source=url)
