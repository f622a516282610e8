"""The backend protocol and its value objects (placeholder until the full module lands)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, kw_only=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, kw_only=True)
class FirstByte:
    pass


@dataclass(frozen=True, kw_only=True)
class TextDelta:
    text: str


@dataclass(frozen=True, kw_only=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, kw_only=True)
class ToolCallStarted:
    index: int
    name: str


@dataclass(frozen=True, kw_only=True)
class Retrying:
    attempt: int
    reason: str
    delay: float


@dataclass(frozen=True, kw_only=True)
class TurnResult:
    content: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None
    finish_reason: str | None


BackendEvent = FirstByte | TextDelta | ReasoningDelta | ToolCallStarted | Retrying | TurnResult


class BackendError(Exception):
    pass


class AgentBackend(Protocol):
    def stream_turn(
        self,
        *,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
    ) -> AsyncIterator[BackendEvent]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class EndpointConfig:
    base_url: str
    model: str
    api_key: str | None = None
    connect_timeout: float = 5.0
    first_byte_timeout: float = 600.0
    read_timeout: float = 120.0
    max_retries: int = 3
    backoff_base: float = 0.5
