"""Which endpoint a turn goes to, when its model is served by several (one rule, pure).

The line for a model's slots is one line across all its endpoints (runs.engine.queue.slotsql):
its order, round robin by owner with places only moving forward, decides who goes next;
placement only decides *where*. Walking the line in order while slots are free, each waiter
is placed on a free endpoint:

1. its own: the endpoint of its previous turn, which holds its prompt in its cache;
2. else the endpoint holding most of its run's prompts (their shared prefix: the contracts,
   the target's context);
3. else the least busy (the smallest share of its slots held), the first listed on a tie.

The bounded preference: a waiter whose own endpoint is full (and up) while another has a free
slot lets that slot go to the waiters behind it for at most PREFER_OWN_SECONDS after it asked;
then it takes any free slot. It never loses its place meanwhile, and the slot it passes over
goes to the next in line, so nobody waits on an idle slot longer than that bound. A model
with one endpoint has nothing to prefer: the first in line takes the free slot, as always.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

# Long enough for the agent on its endpoint to finish a short turn; short against re-reading
# a long prompt from scratch on another server (seconds on a GPU for tens of thousands).
PREFER_OWN_SECONDS = 2.0


@dataclass(frozen=True, kw_only=True)
class Waiter:
    step_id: int
    run_id: UUID
    endpoint: str  # its previous turn's ("" for none)
    asked_at: datetime | None  # when it asked for this slot (None: just now)
    # The endpoints its run may use (None: all): a run keeps the endpoints it launched with.
    allowed: frozenset[str] | None = None


def place(
    waiters: Iterable[Waiter],
    caps: Mapping[str, int],
    held: Mapping[str, int],
    *,
    down: frozenset[str] | set[str] = frozenset(),
    run_prompts: Mapping[UUID, Mapping[str, int]] | None = None,
    now: datetime,
    prefer_own: timedelta = timedelta(seconds=PREFER_OWN_SECONDS),
) -> dict[int, str]:
    """The waiters (in line order) that get a slot now, each with its endpoint.

    `caps`: each endpoint's slots, in the order listed; `held`: slots held on each;
    `down`: endpoints no turn goes to; `run_prompts`: per run, how many of its steps last
    ran on each endpoint.
    """
    order = {url: n for n, url in enumerate(caps)}
    free = {url: cap - held.get(url, 0) for url, cap in caps.items() if url not in down}
    taken: Counter[str] = Counter()
    placed: dict[int, str] = {}
    for waiter in waiters:
        if not any(n > 0 for n in free.values()):
            break
        open_urls = [
            url
            for url, n in free.items()
            if n > 0 and (waiter.allowed is None or url in waiter.allowed)
        ]
        if not open_urls:
            continue  # none of its run's endpoints is free: the next in line may use another
        url = _choose(waiter, open_urls, caps, held, taken, down, run_prompts, order)
        if url is None and _may_wait(waiter, now, prefer_own):
            continue
        url = url or _best(waiter, open_urls, caps, held, taken, run_prompts, order)
        placed[waiter.step_id] = url
        free[url] -= 1
        taken[url] += 1
    return placed


def _choose(
    waiter: Waiter,
    open_urls: list[str],
    caps: Mapping[str, int],
    held: Mapping[str, int],
    taken: Counter[str],
    down: frozenset[str] | set[str],
    run_prompts: Mapping[UUID, Mapping[str, int]] | None,
    order: Mapping[str, int],
) -> str | None:
    """Its own endpoint when free; None when it is full and worth waiting for."""
    own = waiter.endpoint
    if own in open_urls:
        return own
    usable = own in caps and (waiter.allowed is None or own in waiter.allowed)
    if usable and own not in down:
        return None  # full: it may wait for it (bounded by _may_wait)
    return _best(waiter, open_urls, caps, held, taken, run_prompts, order)


def _may_wait(waiter: Waiter, now: datetime, prefer_own: timedelta) -> bool:
    return waiter.asked_at is None or now - waiter.asked_at < prefer_own


def _best(
    waiter: Waiter,
    open_urls: list[str],
    caps: Mapping[str, int],
    held: Mapping[str, int],
    taken: Counter[str],
    run_prompts: Mapping[UUID, Mapping[str, int]] | None,
    order: Mapping[str, int],
) -> str:
    prompts = (run_prompts or {}).get(waiter.run_id, {})

    def rank(url: str) -> tuple[int, float, int]:
        busy = (held.get(url, 0) + taken[url]) / max(1, caps[url])
        return (-prompts.get(url, 0), busy, order[url])

    return min(open_urls, key=rank)
