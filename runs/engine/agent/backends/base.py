"""The backend protocol and the value objects an agent turn streams.

A backend turns one request (messages + tools) into a stream of events ending in exactly one
`TurnResult`. Transient faults surface as `Retrying` events (the caller drops the partial text
of that attempt); a fault that outlasts the retry budget (a time, so a server restarting or
loading a model is waited for) raises `BackendError`, whose message is the sentence a person
reads on the failed step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the raw JSON text as the model produced it; it may not parse


@dataclass(frozen=True, kw_only=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, if sent


@dataclass(frozen=True, kw_only=True)
class Timings:
    """llama.cpp's `timings` on its last chunk: what the turn cost the server."""

    prompt_n: int  # prompt tokens it had to process
    cache_n: int  # prompt tokens it reused from its cache (KV cache of the slot)
    predicted_n: int  # tokens generated
    predicted_ms: float  # time spent generating them
    predicted_per_second: float | None  # decode speed, as the server computed it
    prompt_ms: float = 0.0  # time spent processing the prompt_n tokens (prefill)


@dataclass(frozen=True, kw_only=True)
class FirstByte:
    """The first content, reasoning or tool-call byte of this attempt arrived (no longer queued)."""


@dataclass(frozen=True, kw_only=True)
class PromptProgress:
    """llama.cpp is reading the prompt (`return_progress`): `processed` of `total` tokens are in
    the slot, `cache` of them reused from its cache. Sanitised: 0 <= cache <= processed <=
    total, total > 0. Servers that ignore the flag send none; the turn streams the same."""

    total: int
    cache: int
    processed: int

    @property
    def percent(self) -> int:
        """0-100, rounded down: 100 only once every token is in."""
        return self.processed * 100 // self.total


@dataclass(frozen=True, kw_only=True)
class TextDelta:
    text: str


@dataclass(frozen=True, kw_only=True)
class ReasoningDelta:
    """Thinking text: `delta.reasoning_content` (llama.cpp, Qwen) or `delta.reasoning`."""

    text: str


@dataclass(frozen=True, kw_only=True)
class ToolCallStarted:
    """A tool call's name is known; sent once per call so the UI can say "calling grep…"."""

    index: int
    name: str


class RetryKind:
    """What a retried fault says about the server (the status words depend on it)."""

    UNAVAILABLE = "unavailable"  # refused, unreachable, restarting, loading a model (502-504)
    BUSY = "busy"  # 429: backpressure; its Retry-After is honoured
    FAULT = "fault"  # anything else: a 500, a stall, a cut or garbled stream


@dataclass(frozen=True, kw_only=True)
class Retrying:
    """The whole turn starts again after `delay` seconds; drop this attempt's partial output."""

    attempt: int  # the attempt that failed, counting from 1
    reason: str
    delay: float
    kind: str = RetryKind.FAULT
    budget_left: float = 0.0  # seconds of the retry budget left after this delay
    # What the failed attempt cost: chunks it streamed (about one token each) and, when the
    # server had started answering (so it processed the prompt), the prompt's estimated size.
    discarded_tokens: int = 0
    discarded_prompt: int = 0
    # The endpoint itself went away (refused, reset, silent past its limits), as opposed to
    # an answer it gave: a model served by several is routed around it.
    lost_endpoint: bool = False


@dataclass(kw_only=True)
class Tries:
    """A turn's tries so far, carried from request to request of the same turn: an agent
    that gives its slot back for a backoff starts the turn again once it holds one (perhaps
    on another endpoint), and the retry budget still counts from the turn's first fault,
    the wait for the slot included."""

    made: int = 0  # requests sent for the turn (one asked again without a flag not counted)
    first_fault: float | None = None  # the event loop's clock at the turn's first fault
    # The endpoints whose latest try of the turn found them gone (refused, reset, silent).
    unanswered: set[str] = field(default_factory=set)


@dataclass(frozen=True, kw_only=True)
class TurnResult:
    """Always the last event of a successful turn."""

    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None  # None when the server reported none; nothing is estimated here
    finish_reason: str | None  # "length": cut at max_tokens or by a full context
    # llama.cpp's, when sent: a measurement, not part of the answer (equal turns may differ).
    timings: Timings | None = field(default=None, compare=False)


BackendEvent = (
    PromptProgress
    | FirstByte
    | TextDelta
    | ReasoningDelta
    | ToolCallStarted
    | Retrying
    | TurnResult
)


class BackendError(Exception):
    """The turn failed for good; str(error) is a clear sentence naming the fault and server."""


class GaveUp(BackendError):
    """The turn's tries ran out at `url`; `lost`: the last found the server gone (refused,
    reset, silent), not an answer it gave."""

    def __init__(self, *, reason: str, url: str, tries: str, lost: bool) -> None:
        super().__init__(f"{reason} (model server at {url}, {tries})")
        self.reason = reason
        self.url = url
        self.tries = tries
        self.lost = lost


class StructuredOutputRejected(BackendError):
    """The server refused `response_format` (an HTTP 4xx): ask it again in prose."""


class AgentBackend(Protocol):
    # A backend may carry `accepts_response_format: bool`, False once the server refused
    # `response_format`; the agent reads it with getattr, so test backends need not.
    # `tool_choice` "none" sends the tools (the prompt keeps its cached prefix) but asks for
    # an answer without calls: the agent uses it only on a server that says it is llama.cpp.
    # `tries`: the turn's tries so far, when an earlier request of the same turn met a fault
    # (the retry budget continues from them); a consumer that stops reading at a `Retrying`
    # waits the delay itself and asks again with the same `tries`.

    def stream_turn(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        response_format: dict[str, Any] | None = None,
        tool_choice: str = "auto",
        tries: Tries | None = None,
    ) -> AsyncGenerator[BackendEvent, None]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class EndpointConfig:
    base_url: str  # e.g. "http://127.0.0.1:8080/v1"
    model: str  # the model name sent in the request body
    api_key: str | None = None
    connect_timeout: float = 5.0
    # A local model can take minutes to load and prefill; this wait is the step's "queued".
    first_byte_timeout: float = 600.0
    read_timeout: float = 120.0  # the longest silence between chunks once streaming
    # A turn's retries stop once this long has passed since its first fault: long enough for
    # a server restart or a model load (llama-swap waits up to 120 s for one).
    retry_seconds: float = 180.0
    max_retries: int | None = None  # an optional cap on the count as well
    backoff_base: float = 0.5  # base * 2**n seconds, capped at max_backoff; Retry-After wins
    max_backoff: float = 10.0


@dataclass(frozen=True, kw_only=True)
class ServerProps:
    """What a llama.cpp server says about itself (`GET /props`)."""

    total_slots: int  # requests it serves in parallel (--parallel)
    n_ctx: int | None = None  # context size per slot
    source: str = ""  # the URL that answered


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """About how many tokens a prompt holds (four characters a token), for an attempt whose
    usage never arrived (cut off, retried, cancelled) but whose prompt the server processed."""
    return len(json.dumps(messages, ensure_ascii=False, default=str)) // 4
