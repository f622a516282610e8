"""How long an agent waiting for a model slot will likely wait: from how the line really moves.

A waiter's place (scheduler.queue_line) counts the grants before its own. A grant lasts from
the slot's grant to its release: one model turn, or every turn of a step while it keeps the
slot through quick tools (nobody else's work waiting), with the HTTP and tool overhead
between. So the measure is the slot holding itself, summed on the steps at each release
(`held_seconds` over `grants`; a grant whose try failed is not counted, or an outage's quick
refusals would make the line look fast once the server is back) over the recent steps of
every run in the model's line, this one's included: one line, one measure, so two users'
runs in it are told waits that agree with their places (the server's speed is no one's to
keep: only the two sums are read, never a name or target). With `hold` seconds per grant and
the model's `slots`, the holders free their slots once their grant's `hold` is spent (at once
when already longer), each grant after takes `hold` again, and the waiter `place`-th in line
gets the `place`-th slot freed.

No grant measured yet: no estimate, rather than an invented one. A turn of the model finding
its server unavailable while nobody is being served (or every endpoint of the run marked
down): no estimate either, said as such (UNAVAILABLE), since nobody's wait ends before the
server is back.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from datetime import timedelta

from django.db.models import Sum
from django.utils import timezone

from runs.engine.queue.scheduler import QueueLine
from runs.models import FlowRun, FlowStep, ModelEndpoint

# An estimate beyond this is not a number anyone can use (a day).
LONGEST = 86_400.0
# The wait of a waiter whose server is unavailable: not an estimate (runs.labels says so).
UNAVAILABLE = math.inf
# What the line's runs measured counts while this recent, and from this many of their steps.
RECENT = timedelta(hours=6)
RECENT_STEPS = 200


def hold_seconds(run: FlowRun) -> float | None:
    """How long a grant of the model kept its slot, on average, over the recent steps of runs
    on this run's model and endpoints, this run's included (only the sums are read); None:
    none released yet. One measure for the whole line, so two runs sharing it are told
    waits that agree with their places."""
    recent = (
        FlowStep.objects.filter(
            run__model=run.model,
            run__endpoint_url=run.endpoint_url,
            run__created_at__gte=timezone.now() - RECENT,
            grants__gt=0,
        )
        .order_by("-id")
        .values_list("id", flat=True)[:RECENT_STEPS]
    )
    sums = FlowStep.objects.filter(id__in=recent).aggregate(
        held=Sum("held_seconds"), grants=Sum("grants")
    )
    held, grants = sums["held"] or 0.0, sums["grants"] or 0
    return held / grants if grants > 0 and held > 0 else None


def slot_waits(run: FlowRun, line: QueueLine) -> dict[int, float]:
    """Each waiting step's estimated wait for a slot (seconds), by step id: UNAVAILABLE while
    the server is; empty when nothing was measured yet. `line`: this run's waiters' places."""
    if not line.places:
        return {}
    if line.unavailable or _endpoints_down(run):
        return dict.fromkeys(line.places, UNAVAILABLE)
    hold = hold_seconds(run)
    if hold is None:
        return {}
    # The slot cap, or the server's own slots when it has fewer (the rest wait in its queue).
    known = [n for n in (run.slots, run.server_slots) if n]
    return waits_in_line(line, hold, min(known) if known else 1)


def waits_in_line(line: QueueLine, hold: float, slots: int) -> dict[int, float]:
    """The waits of `line`'s waiters when a grant keeps its slot `hold` seconds on `slots`."""
    if not line.places:
        return {}
    frees = _slot_frees(hold, slots, line.held, max(line.places.values()))
    return {
        step_id: min(LONGEST, frees[place - 1])
        for step_id, place in line.places.items()
        if place > 0
    }


def _slot_frees(hold: float, slots: int, held: Sequence[float], count: int) -> list[float]:
    """The first `count` moments (seconds from now) a slot is freed for the next in line."""
    # The slots' next free moments: a holder's grant ends after `hold`, at once when it has
    # held longer already; a slot nobody holds is free now.
    free = sorted(max(0.0, hold - seconds) for seconds in held)[:slots]
    free += [0.0] * (slots - len(free))
    heapq.heapify(free)
    moments: list[float] = []
    while len(moments) < count:
        moment = heapq.heappop(free)
        moments.append(moment)
        heapq.heappush(free, moment + hold)
        if moment > LONGEST:
            moments += [LONGEST] * (count - len(moments))
    return moments


def _endpoints_down(run: FlowRun) -> bool:
    """Every endpoint the run launched with is marked down (runs.engine.agent.servers)."""
    urls = [url for url in run.endpoint_url.split(",") if url]
    if not urls:
        return False
    down = ModelEndpoint.objects.filter(url__in=urls, down_until__gt=timezone.now()).count()
    return down >= len(set(urls))
