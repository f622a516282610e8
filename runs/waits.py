"""How long an agent waiting for a model slot will likely wait: from what this run measured.

The only measurements are the model server's own (llama.cpp's `timings` of every kept turn,
summed on the steps: prompt tokens evaluated over the seconds spent on them, tokens generated
over theirs, and the turns those cover). From them, a turn of this run costs the server

    turn = (prompt tokens evaluated per turn) / (prefill tok/s)
         + (tokens generated per turn) / (decode tok/s)

and an agent `place`-th in its model's line gets a slot once `place` turns have ended on the
model's `slots` slots, so its wait is about `place * turn / slots`. No turn timed yet (a new
run, or a server that sends no timings): no estimate, rather than an invented one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from runs.models import FlowRun, FlowStep

# An estimate beyond this is not a number anyone can use (a day).
LONGEST = 86_400.0


def turn_seconds(steps: Sequence[FlowStep]) -> float | None:
    """What one model turn of these steps has cost the server, on average; None: unmeasured."""
    turns = sum(step.timed_turns for step in steps)
    prefill_tokens = sum(step.prefill_tokens for step in steps)
    prefill_seconds = sum(step.prefill_seconds for step in steps)
    decode_tokens = sum(step.decode_tokens for step in steps)
    decode_seconds = sum(step.decode_seconds for step in steps)
    if turns <= 0 or prefill_seconds <= 0 or decode_seconds <= 0 or not decode_tokens:
        return None
    prefill_rate = prefill_tokens / prefill_seconds  # tokens per second
    decode_rate = decode_tokens / decode_seconds
    seconds = (
        prefill_tokens / turns / prefill_rate if prefill_rate > 0 else 0.0
    ) + decode_tokens / turns / decode_rate
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def slot_waits(
    run: FlowRun, steps: Sequence[FlowStep], positions: Mapping[int, int]
) -> dict[int, float]:
    """Each waiting step's estimated wait for a slot (seconds), by step id; empty when this
    run has measured nothing yet. `positions`: the turns ahead of each waiter in the model's
    line (its place, or for one without a place yet the least turns before it:
    scheduler.QueueLine.ahead)."""
    if not positions:
        return {}
    turn = turn_seconds(steps)
    if turn is None:
        return {}
    # The slot cap, or the server's own slots when it has fewer (the rest wait in its queue).
    known = [n for n in (run.slots, run.server_slots) if n]
    slots = min(known) if known else 1
    return {
        step_id: min(LONGEST, place * turn / slots)
        for step_id, place in positions.items()
        if place > 0
    }
