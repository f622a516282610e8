"""What an attempt counts: one frozen value, stored on the step and its session, checkpointed
with every turn, and read back by the Method table, the pane and the exports.

Tokens are *kept* (the turns the transcript holds) or *spent* (every try of every attempt,
retried, cut off or cancelled ones included), so spent is never below kept: that rule lives
here, in `__post_init__`, and every reader gets it by building a Counters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Counters:
    turns: int = 0  # completed turns the transcript holds
    tool_calls: int = 0
    tokens_in: int = 0  # kept
    tokens_out: int = 0
    tokens_spent_in: int = 0  # spent, >= kept
    tokens_spent_out: int = 0
    # Server timings of the kept turns (llama.cpp): prompt tokens reused from its cache,
    # tokens generated over the seconds spent generating them...
    cached_tokens: int = 0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    # ...and prompt tokens it evaluated over the seconds spent on them (prefill), and the
    # turns whose timings these sums hold.
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    timed_turns: int = 0
    last_tool: str = ""

    def __post_init__(self) -> None:
        # The one place spent >= kept is enforced: a stream that never finished may have been
        # counted as kept before its cost was estimated as spent.
        object.__setattr__(self, "tokens_spent_in", max(self.tokens_spent_in, self.tokens_in))
        object.__setattr__(self, "tokens_spent_out", max(self.tokens_spent_out, self.tokens_out))

    @classmethod
    def of(cls, row: Any, *, turns: int = 0) -> Counters:
        """The counters a step row (or anything with its fields) holds."""
        return cls(turns=turns, **{name: getattr(row, name) for name in STEP_FIELDS})

    def fresh(self) -> Counters:
        """A new attempt's counters after a retry: nothing kept, everything spent carried."""
        return Counters(
            tokens_spent_in=self.tokens_spent_in, tokens_spent_out=self.tokens_spent_out
        )

    def step_fields(self) -> dict[str, Any]:
        """The step row's columns, as an UPDATE writes them."""
        return {name: getattr(self, name) for name in STEP_FIELDS}

    def session_fields(self) -> dict[str, Any]:
        """The session row's columns: the kept turns of this attempt's transcript."""
        return {
            "turns_completed": self.turns,
            "tool_calls": self.tool_calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }

    def replace(self, **changes: Any) -> Counters:
        return dataclasses.replace(self, **changes)

    @property
    def reports_cache(self) -> bool:
        """The server said what it reused: prompt tokens were sent, and it sent timings
        (a server without them leaves both the cache count and the decode time at zero)."""
        return bool(self.tokens_in) and (bool(self.cached_tokens) or self.decode_seconds > 0)

    @property
    def cache_reuse(self) -> float | None:
        """The share of prompt tokens the server reused from its cache (0..1), if reported."""
        if not self.reports_cache:
            return None
        return min(1.0, self.cached_tokens / self.tokens_in)


@dataclass(frozen=True, kw_only=True)
class CacheSaving:
    """What a run's agents saved the server: prompt tokens it reused from its cache instead
    of evaluating them (llama.cpp's `cache_n`), summed over every kept turn of every agent
    whose server reports it, against the prompt tokens those turns sent."""

    reused: int
    prompt: int

    @classmethod
    def of(cls, counters: Iterable[Counters]) -> CacheSaving | None:
        """The sum over the steps that report their cache; None when none does (yet)."""
        reporting = [c for c in counters if c.reports_cache]
        if not reporting:
            return None
        return cls(
            reused=sum(c.cached_tokens for c in reporting),
            prompt=sum(c.tokens_in for c in reporting),
        )

    @property
    def share(self) -> float:
        return min(1.0, self.reused / self.prompt) if self.prompt else 0.0

    @property
    def short(self) -> str:
        """For a narrow place (the pane's header): "12,400 (71%)"."""
        return f"{min(self.reused, self.prompt):,} ({self.share:.0%})"

    @property
    def sentence(self) -> str:
        """ "12,400 prompt tokens reused from the server's cache (71%)"."""
        reused = min(self.reused, self.prompt)
        return f"{reused:,} prompt tokens reused from the server's cache ({self.share:.0%})"


# The step's columns that hold counters (every field but the session-only turn count).
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(Counters) if f.name != "turns")
SESSION_FIELDS = tuple(Counters().session_fields())
