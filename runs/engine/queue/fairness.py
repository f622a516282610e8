"""Fair use: which runs may start (the per-user cap) and whose ready step is claimed next.

The one owner of both rules. The claim reads them in SQL, and every view of a waiting run
(pane, history, CLI) asks `waiting_reasons`, which reads the same admission SQL, so a run
shown as waiting is exactly a run the claim passes over.

- **The cap**: a user has at most ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER runs `running`. Their
  further runs are accepted and stay `pending`, and start in launch order as theirs end. Runs
  without an owner (the CLI without --user) are the operator's and are not capped.
- **Round robin by owner**: among the claimable steps, the owner with the fewest live claimed
  steps goes first, then the oldest run. One user's backlog of 200 runs is one party among
  the others: their 201st step never goes ahead of another user's first. The model's line
  for a slot is round robin by owner too, by who may join it (runs.engine.queue.slotsql: one
  step per owner in the line, each joining at its end, so no place ever moves backwards).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorWrapper

from runs.models import ACTIVE_STEP, FlowStep, RunStatus

_ACTIVE_STEPS = [str(status) for status in ACTIVE_STEP]
# Candidates a claim of N locks at most (the rest wait for the next claim): enough that
# several workers claiming at the same moment, skipping each other's rows, still fill theirs.
CLAIM_POOL_FACTOR = 4
CLAIM_POOL_SLACK = 16

# `party` keys an owner (runs without one share the key 0: user ids start at 1).
# `waiting`: each owner's pending runs in launch order, with how many of theirs are running;
# `admitted`: the runs whose steps may be claimed: the running ones, and each owner's first
# pending ones while fewer than the cap are running (cap 0: no cap).
_ADMISSION = """
    active AS (
        SELECT owner_id, count(*) AS n FROM flow_runs
        WHERE status = 'running' AND owner_id IS NOT NULL GROUP BY owner_id
    ),
    waiting AS (
        SELECT p.id, p.owner_id, p.created_at, p.model, coalesce(active.n, 0) AS active,
            row_number() OVER (PARTITION BY p.owner_id ORDER BY p.created_at, p.id) AS place
        FROM flow_runs p LEFT JOIN active ON active.owner_id = p.owner_id
        WHERE p.status = 'pending'
    ),
    admitted AS (
        SELECT id, coalesce(owner_id, 0) AS party, created_at, model FROM flow_runs
        WHERE status = 'running'
        UNION ALL
        SELECT id, coalesce(owner_id, 0), created_at, model FROM waiting
        WHERE owner_id IS NULL OR %(cap)s = 0 OR active + place <= %(cap)s
    )
"""

# The claim's choice, in its order: each claimable step's turn is its owner's live claimed
# steps plus its rank among the owner's claimable ones, so one claim of N deals the steps out
# round robin, starting with the owner who has the fewest running. Only the first `pool`
# candidates are locked and re-read (a backlog of hundreds costs one sort, not hundreds of
# row reads); the pool leaves room for rows other workers are claiming at the same moment.
# The outer query repeats the claimable condition: a row another worker claimed (and
# committed) after this statement's snapshot is re-checked against its new version once
# locked, and skipped.
_CLAIM = f"""
    WITH {_ADMISSION},
    busy AS (
        SELECT coalesce(r.owner_id, 0) AS party, count(*) AS n
        FROM flow_steps s JOIN flow_runs r ON r.id = s.run_id
        WHERE r.status = 'running' AND s.status = ANY(%(active_steps)s)
            AND s.lease_expires_at >= %(now)s
        GROUP BY 1
    ),
    candidates AS (
        SELECT s.id, s.run_id, s.position, a.created_at, a.party, a.model,
            coalesce(busy.n, 0) + row_number() OVER (
                PARTITION BY a.party ORDER BY a.created_at, s.run_id, s.position
            ) AS turn
        FROM flow_steps s
        JOIN admitted a ON a.id = s.run_id
        LEFT JOIN busy ON busy.party = a.party
        WHERE (s.status = 'ready'
                OR (s.status = ANY(%(active_steps)s) AND s.lease_expires_at < %(now)s))
            AND (%(run)s::uuid IS NULL OR s.run_id = %(run)s::uuid)
        ORDER BY turn, a.created_at, s.run_id, s.position
        LIMIT %(pool)s
    )
    SELECT s.id, c.party, c.model FROM flow_steps s JOIN candidates c ON c.id = s.id
    WHERE s.status = 'ready'
        OR (s.status = ANY(%(active_steps)s) AND s.lease_expires_at < %(now)s)
    ORDER BY c.turn, c.created_at, c.run_id, c.position
    LIMIT %(limit)s
    FOR UPDATE OF s SKIP LOCKED
"""  # noqa: S608 - built from constants only

# The pending runs the claim passes over because their owner is at the cap.
_WAITING = f"""
    WITH {_ADMISSION}
    SELECT id FROM waiting
    WHERE id = ANY(%(runs)s) AND owner_id IS NOT NULL AND %(cap)s > 0
        AND active + place > %(cap)s
"""  # noqa: S608 - built from constants only


def active_run_cap() -> int:
    """Runs one user may have running at once (0: no cap)."""
    return int(settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER)


def claimable_steps(
    cursor: CursorWrapper, *, limit: int, now: datetime, run_id: UUID | None
) -> list[tuple[int, int, str]]:
    """Lock up to `limit` claimable steps, in fair order, inside the caller's transaction;
    returns (step id, its owner's party key, its run's model).

    Claimable: ready, or active with an expired lease (its worker died), of an admitted run.
    """
    params: dict[str, Any] = {
        "cap": active_run_cap(),
        "active_steps": _ACTIVE_STEPS,
        "now": now,
        "run": run_id,
        "limit": limit,
        "pool": CLAIM_POOL_FACTOR * limit + CLAIM_POOL_SLACK,
    }
    cursor.execute(_CLAIM, params)
    return [(row[0], row[1], row[2]) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Claimed:
    """A step being leased, with what its place in its model's line depends on."""

    step: FlowStep
    party: int  # its run's owner (0: no owner)
    model: str


def waiting_reasons(run_ids: Iterable[UUID]) -> dict[UUID, str]:
    """Why each given run has not started, for those waiting for their owner's cap."""
    ids = list(run_ids)
    cap = active_run_cap()
    if not ids or cap <= 0:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_WAITING, {"cap": cap, "runs": ids})
        return {row[0]: waiting_reason_text(cap) for row in cursor.fetchall()}


def waiting_reason(run: Any) -> str:
    """Why this run has not started ("" unless it waits for its owner's cap)."""
    if run.status != RunStatus.PENDING or run.owner_id is None:
        return ""
    return waiting_reasons([run.id]).get(run.id, "")


def waiting_reason_text(cap: int) -> str:
    return f"{cap} of your runs {'is' if cap == 1 else 'are'} active"
