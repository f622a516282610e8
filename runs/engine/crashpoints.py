"""Crash points: a process kills itself (SIGKILL) at a named moment, for the fault suite.

    ORCHESTRATOR_CRASH_AT=finish_step:after:2 manage.py runworker orchestrator.dispatch

dies the instant its second `finish_step` has committed, before anyone is told. Points are the
engine's database calls (`claim_steps`, `load_context`, `try_acquire_slot`, `mark_streaming`,
`checkpoint`, `bulk_create` of events, `finish_step`, `heartbeat`, ...), each `before` or
`after`, plus `tool` (a tool call) and `model_chunk` (a line of the model's stream). The count
is per process. Unset, which is the default, nothing is wrapped and nothing is counted.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

ENV = "ORCHESTRATOR_CRASH_AT"
WHEN = ("before", "after")


@dataclass(frozen=True)
class CrashPoint:
    name: str
    when: str
    nth: int

    @classmethod
    def parse(cls, text: str) -> CrashPoint:
        try:
            name, when, nth = text.split(":")
            point = cls(name, when, int(nth))
        except ValueError:
            raise ValueError(f"{ENV} must look like name:before|after:N, not {text!r}") from None
        if point.when not in WHEN or point.nth < 1:
            raise ValueError(f"{ENV} must look like name:before|after:N, not {text!r}")
        return point


_plan = CrashPoint.parse(os.environ[ENV]) if os.environ.get(ENV) else None
_counts: dict[tuple[str, str], int] = {}
_lock = threading.Lock()


def active() -> bool:
    return _plan is not None


def reached(name: str, when: str) -> None:
    """Count this moment; at the planned one, say so on stderr and die without clean-up."""
    if _plan is None or (name, when) != (_plan.name, _plan.when):
        return
    with _lock:
        count = _counts[name, when] = _counts.get((name, when), 0) + 1
        if count == _plan.nth:
            sys.stderr.write(f"crash point {name}:{when}:{count} reached, killing myself\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def around[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` with a crash point before and after it, named after it; `fn` itself when off."""
    if _plan is None:
        return fn
    name = getattr(fn, "__name__", "call")

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        reached(name, "before")
        result = fn(*args, **kwargs)
        reached(name, "after")
        return result

    return wrapper
