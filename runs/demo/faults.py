"""Faults the scripted model can inject, so tests and demos meet every failure a real server has.

A plan is a list of rules; each request takes the first rule that still applies to it (role
filter, remaining `times`) and that use is counted under a lock, as requests arrive on many
threads. Rules come from a compact string, `kind[:role=X][:times=N][:seconds=S]`; `seconds` is
a stall's length, or the Retry-After a 429 or a 503 sends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    REFUSE = "refuse"  # close the socket without a response
    HTTP_429 = "http_429"  # busy, with Retry-After: 1 (or `seconds`)
    HTTP_500 = "http_500"
    STALL_FIRST_BYTE = "stall_first_byte"  # sleep `seconds` before any byte is sent
    STALL_MID_STREAM = "stall_mid_stream"  # send a few chunks, then go silent for `seconds`
    DROP_MID_STREAM = "drop_mid_stream"  # send a few chunks, then cut the connection
    MALFORMED_CHUNK = "malformed_chunk"  # a `data:` line that is not JSON
    BAD_TOOL_ARGS = "bad_tool_args"  # a tool call whose arguments are not JSON
    LOOP_TOOL = "loop_tool"  # the same tool call forever, never a final answer
    HTTP_503 = "http_503"  # "Loading model", as llama.cpp answers while it loads (Retry-After:
    # `seconds` when given, as a proxy may send)
    # What real models send (a tiny GGUF with random weights does all of these):
    NUL_TEXT = "nul_text"  # NUL, control characters and an unpaired surrogate in the text
    LENGTH = "length"  # the answer stops after a few pieces with finish_reason "length"
    CUT_TOOL_CALL = "cut_tool_call"  # a tool call cut mid-arguments, finish_reason "length"


DEFAULT_STALL_SECONDS = 30.0


@dataclass
class FaultRule:
    kind: FaultKind
    role: str | None = None  # only requests of this agent role (`Agent role:` in the prompt)
    times: int | None = None  # how many requests it hits; None = every one
    seconds: float | None = None  # a stall's length, or a 429's or 503's Retry-After
    hits: int = 0  # requests it has hit so far

    @property
    def stall_seconds(self) -> float:
        return DEFAULT_STALL_SECONDS if self.seconds is None else self.seconds

    def retry_after(self, default: float | None) -> dict[str, str]:
        """The Retry-After header a 429 or a 503 of this rule sends (none without a value)."""
        seconds = default if self.seconds is None else self.seconds
        return {} if seconds is None else {"Retry-After": f"{seconds:g}"}

    def applies_to(self, role: str | None) -> bool:
        if self.role is not None and self.role != role:
            return False
        return self.times is None or self.hits < self.times

    def describe(self) -> str:
        """Back to the compact form, e.g. `http_500:role=security:times=2`."""
        parts = [self.kind.value]
        if self.role is not None:
            parts.append(f"role={self.role}")
        if self.times is not None:
            parts.append(f"times={self.times}")
        if self.seconds is not None:
            parts.append(f"seconds={self.seconds:g}")
        return ":".join(parts)


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take(self, role: str | None) -> FaultRule | None:
        """The first rule that applies to this request, counted as used."""
        with self._lock:
            for rule in self.rules:
                if rule.applies_to(role):
                    rule.hits += 1
                    return rule
        return None

    def hits(self) -> dict[str, int]:
        """Uses per rule, keyed by its compact form (for assertions and the CLI)."""
        with self._lock:
            return {rule.describe(): rule.hits for rule in self.rules}

    @classmethod
    def parse(cls, specs: Iterable[str]) -> FaultPlan:
        """From `kind[:role=X][:times=N][:seconds=S]` strings, e.g. `http_500:times=2`."""
        return cls(rules=[parse_rule(spec) for spec in specs])


def fault_plan(*specs: str) -> FaultPlan:
    """`fault_plan("http_500:times=1", "drop_mid_stream:role=security")`."""
    return FaultPlan.parse(specs)


def parse_rule(spec: str) -> FaultRule:
    """One rule from its compact form; ValueError with a sentence saying what is wrong."""
    kind, *options = spec.strip().split(":")
    try:
        rule = FaultRule(kind=FaultKind(kind))
    except ValueError:
        valid = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"unknown fault {kind!r}; valid faults: {valid}") from None
    for option in options:
        key, _, value = option.partition("=")
        if key == "role" and value:
            rule.role = value
        elif key == "times":
            rule.times = _positive_int(value, spec)
        elif key == "seconds":
            rule.seconds = _seconds(value, spec)
        else:
            raise ValueError(
                f"bad fault option {option!r} in {spec!r}; use role=X, times=N or seconds=S"
            )
    return rule


def _positive_int(value: str, spec: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"times needs a whole number of at least 1 in {spec!r}, got {value!r}")
    return int(value)


def _seconds(value: str, spec: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects nan
        raise ValueError(f"seconds needs a number of at least 0 in {spec!r}, got {value!r}")
    return seconds
