"""Faults the scripted model can inject, so tests meet every failure a real server has."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    REFUSE = "refuse"  # close the socket without a response
    HTTP_429 = "http_429"  # busy, with Retry-After: 1
    HTTP_500 = "http_500"
    STALL_FIRST_BYTE = "stall_first_byte"  # sleep before anything is sent
    STALL_MID_STREAM = "stall_mid_stream"  # send a little, then go silent
    DROP_MID_STREAM = "drop_mid_stream"  # send a little, then cut the connection
    MALFORMED_CHUNK = "malformed_chunk"  # a `data:` line that is not JSON
    BAD_TOOL_ARGS = "bad_tool_args"  # a tool call whose arguments are not JSON
    LOOP_TOOL = "loop_tool"  # the same tool call forever, never a final answer


@dataclass
class FaultRule:
    kind: FaultKind
    role: str | None = None  # only requests of this agent role
    times: int | None = None  # how many requests it hits; None = all
    seconds: float = 30.0  # for stalls
    hits: int = 0

    def matches(self, role: str | None) -> bool:
        if self.role is not None and self.role != role:
            return False
        return self.times is None or self.hits < self.times


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, role: str | None) -> FaultRule | None:
        """The first rule that applies to this request, counted as used."""
        with self._lock:
            for rule in self.rules:
                if rule.matches(role):
                    rule.hits += 1
                    return rule
        return None

    @classmethod
    def parse(cls, specs: list[str]) -> FaultPlan:
        """From `kind[:role=X][:times=N][:seconds=S]` strings, e.g. `http_500:times=2`."""
        return cls(rules=[_parse_rule(spec) for spec in specs])


def fault_plan(*specs: str) -> FaultPlan:
    return FaultPlan.parse(list(specs))


def _parse_rule(spec: str) -> FaultRule:
    kind, *options = spec.split(":")
    try:
        rule = FaultRule(kind=FaultKind(kind))
    except ValueError:
        valid = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"unknown fault {kind!r}; valid faults: {valid}") from None
    for option in options:
        key, _, value = option.partition("=")
        if key == "role" and value:
            rule.role = value
        elif key == "times" and value.isdigit():
            rule.times = int(value)
        elif key == "seconds":
            try:
                rule.seconds = float(value)
            except ValueError:
                raise ValueError(f"fault option seconds needs a number, got {value!r}") from None
        else:
            raise ValueError(f"bad fault option {option!r} in {spec!r}")
    return rule
