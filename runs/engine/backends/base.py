"""The backend protocol and the value objects an agent turn streams.

A backend turns one request (messages + tools) into a stream of events ending in exactly one
`TurnResult`. Transient faults surface as `Retrying` events (the caller drops the partial text
of that attempt); a fault that outlives the bounded retries raises `BackendError`, whose
message is the sentence a person reads on the failed step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
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


@dataclass(frozen=True, kw_only=True)
class FirstByte:
    """The first content, reasoning or tool-call byte of this attempt arrived (no longer queued)."""


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


@dataclass(frozen=True, kw_only=True)
class Retrying:
    """The whole turn starts again after `delay` seconds; drop this attempt's partial output."""

    attempt: int  # the attempt that failed, counting from 1
    reason: str
    delay: float


@dataclass(frozen=True, kw_only=True)
class TurnResult:
    """Always the last event of a successful turn."""

    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None  # None when the server reported none; nothing is estimated here
    finish_reason: str | None


BackendEvent = FirstByte | TextDelta | ReasoningDelta | ToolCallStarted | Retrying | TurnResult


class BackendError(Exception):
    """The turn failed for good; str(error) is a clear sentence naming the fault and server."""


class StructuredOutputRejected(BackendError):
    """The server refused `response_format` (an HTTP 4xx): ask it again in prose."""


class AgentBackend(Protocol):
    # A backend may carry `accepts_response_format: bool`, False once the server refused
    # `response_format`; the agent reads it with getattr, so test backends need not.

    def stream_turn(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        response_format: dict[str, Any] | None = None,
    ) -> AsyncIterator[BackendEvent]: ...

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
    max_retries: int = 3  # retries after the first attempt
    backoff_base: float = 0.5  # base * 2**n seconds, capped at 8 s; Retry-After wins (<= 30 s)
