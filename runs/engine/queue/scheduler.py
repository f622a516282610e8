"""The scheduler: claims, leases, model slots and the DAG, all as PostgreSQL transactions.

Every function here is synchronous and does one short transaction, so a test can drive the
scheduler step by step. Workers on several machines may call these at once: row locks
(SKIP LOCKED), conditional UPDATEs and one advisory lock per model keep them honest.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs.engine.agent.context import StepContext, open_attempt
from runs.engine.queue import fairness, placement, reset, slotsql
from runs.engine.queue.reset import Reset, lease_delta, reset_step
from runs.engine.storable import clean_text
from runs.models import (
    ACTIVE_STEP,
    TERMINAL_RUN,
    TERMINAL_STEP,
    AgentEvent,
    AgentSession,
    FlowRun,
    FlowStep,
    RunStatus,
    StepPhase,
    StepStatus,
)

log = logging.getLogger(__name__)


def _lease(step: FlowStep, worker: str, now: datetime) -> None:
    """Make `step` the next attempt, leased to `worker` (the caller saves lease_fields())."""
    fields = reset_step(Reset.LEASE, now, attempt=step.attempt + 1, lease_owner=worker)
    reset.apply(step, fields)


def claim_steps(worker: str, limit: int, *, run_id: UUID | None = None) -> list[int]:
    """Take up to `limit` ready steps (or steps whose worker died) and lease them to `worker`.

    Which ones, and in what order, is fair use's rule (runs.engine.queue.fairness): only runs
    within their owner's cap, round robin across owners. A reclaimed step becomes attempt
    N+1; its agent continues from the last checkpointed turn.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            chosen = fairness.claimable_steps(cursor, limit=limit, now=now, run_id=run_id)
            loaded = FlowStep.objects.in_bulk([step_id for step_id, _, _ in chosen])
            claims = [fairness.Claimed(loaded[i], party, model) for i, party, model in chosen]
            for claim in claims:
                step = claim.step
                if step.status in ACTIVE_STEP:
                    log.info(
                        "reclaiming %s of run %s from %s", step.key, step.run_id, step.lease_owner
                    )
                _lease(step, worker, now)
        steps = [claim.step for claim in claims]
        FlowStep.objects.bulk_update(steps, reset.lease_fields())
        run_ids = {step.run_id for step in steps}
        # A retried run keeps the moment it first started.
        FlowRun.objects.filter(id__in=run_ids, status=RunStatus.PENDING).update(
            status=RunStatus.RUNNING, started_at=Coalesce("started_at", Value(now))
        )
    return [step.id for step in steps]


def heartbeat(worker: str, step_ids: list[int]) -> set[int]:
    """Extend the leases `worker` still holds; a step missing from the result was lost.

    Lost means cancelled, or taken over after this worker stalled past its lease: either way
    the agent must stop at once.
    """
    if not step_ids:
        return set()
    owned = FlowStep.objects.filter(
        id__in=step_ids, lease_owner=worker, status__in=ACTIVE_STEP, run__status=RunStatus.RUNNING
    )
    # A plain read never waits on locks: it tells which steps are still ours.
    kept = set(owned.values_list("id", flat=True))
    with transaction.atomic():
        # Rows locked right now (being finished or checkpointed) are renewed on the next beat;
        # waiting for them here could deadlock against a finisher holding its run's lock.
        free = list(
            FlowStep.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(id__in=kept, lease_owner=worker)
            .order_by("id")
            .values_list("id", flat=True)
        )
        FlowStep.objects.filter(id__in=free).update(lease_expires_at=timezone.now() + lease_delta())
    return kept


@dataclass(frozen=True, kw_only=True)
class SlotAnswer:
    granted: bool
    # 0 when granted; else the step's place in the model's line (1 = next: as the line will
    # move, queue_line), -1 when it is lost.
    position: int
    endpoint: str = ""  # where the slot is, when granted (a base URL; "" with a bare count)


# A model's slots: one count (one endpoint, named "") or each endpoint's cap, in the order
# its endpoints are listed (the first is preferred on a tie).
Slots = int | Mapping[str, int]


class Handed(list[int]):
    """The steps a released slot went to; `endpoints` says where each one's slot is."""

    endpoints: dict[int, str]

    def __init__(self, endpoints: dict[int, str]) -> None:
        super().__init__(endpoints)
        self.endpoints = endpoints


def slot_caps(slots: Slots) -> dict[str, int]:
    return {"": slots} if isinstance(slots, int) else dict(slots)


def try_acquire_slot(step_id: int, worker: str, model: str, slots: Slots) -> SlotAnswer:
    """Take one of the model's slots for this step's next turn, or join the model's queue.

    The line is first come first served by the moment a step joined it, across workers, one
    step per owner at a time (runs.engine.queue.slotsql), so a place only moves forward;
    where the slot is, is placement's rule (runs.engine.queue.placement).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_model_slots(cursor, model)
        return _take_slot(cursor, _slot_params(model, step=step_id, worker=worker), slots)


@dataclass(frozen=True)
class _Seats:
    """The model's live steps as the slot decisions read them (under its lock)."""

    rows: list[tuple[Any, ...]]
    caps: dict[str, int]
    held: Counter[str]
    down: set[str]

    def waiters(self, rows: Iterable[tuple[Any, ...]]) -> list[placement.Waiter]:
        return [
            placement.Waiter(
                step_id=row[0],
                run_id=row[6],
                endpoint=row[7],
                asked_at=row[8],
                allowed=self.allowed(row[9]),
            )
            for row in rows
        ]

    def allowed(self, recorded: str) -> frozenset[str] | None:
        """The endpoints a waiter's run may use among these (its run's own list: a run keeps
        its endpoints whatever another run's, or a worker's, say); None: any (one line)."""
        if set(self.caps) == {""}:
            return None
        return frozenset(url for url in (recorded or "").split(",") if url in self.caps)


def _seats(cursor: CursorWrapper, params: dict[str, Any], slots: Slots) -> _Seats:
    cursor.execute(slotsql.SEATS, params)
    rows = cursor.fetchall()
    caps = slot_caps(slots)
    held: Counter[str] = Counter(row[7] for row in rows if row[3])
    down: set[str] = set()
    if len(caps) > 1:
        cursor.execute(slotsql.DOWN, {**params, "urls": list(caps)})
        down = {row[0] for row in cursor.fetchall()}
    return _Seats(rows=rows, caps=caps, held=held, down=down)


def _place(cursor: CursorWrapper, params: dict[str, Any], seats: _Seats, rows: list) -> dict:
    """Placement's answer for these waiters (in line order)."""
    run_prompts: dict[UUID, dict[str, int]] = {}
    if len(seats.caps) > 1 and rows:
        cursor.execute(slotsql.RUN_PROMPTS, {"runs": list({row[6] for row in rows})})
        for run_id, endpoint, count in cursor.fetchall():
            run_prompts.setdefault(run_id, {})[endpoint] = count
    return placement.place(
        seats.waiters(rows),
        seats.caps,
        seats.held,
        down=seats.down,
        run_prompts=run_prompts,
        now=params["now"],
    )


def _take_slot(cursor: CursorWrapper, params: dict[str, Any], slots: Slots) -> SlotAnswer:
    """The slot decision for one step; the caller holds the model's slot lock."""
    cursor.execute(slotsql.PROMOTE, params)  # an owner whose step in line left sends the next
    seats = _seats(cursor, params, slots)
    step, worker = params["step"], params["worker"]
    me = next((row for row in seats.rows if row[0] == step), None)
    if me is None or me[1] != worker or not me[2]:  # cancelled, or taken over
        return SlotAnswer(granted=False, position=-1)
    if me[3]:  # handed over by a step that gave its slot back
        return SlotAnswer(granted=True, position=0, endpoint=me[7])
    # Those ahead of it: the placed waiters before it (all of them when it has no place);
    # each is placed first, in line order, then this step if a slot is left.
    mine = seats.rows.index(me)
    ahead = [row for n, row in enumerate(seats.rows) if row[4] and row[5] and n < mine]
    if not me[5]:
        ahead = [row for row in seats.rows if row[4] and row[5]]
    placed = _place(cursor, params, seats, [*ahead, me])
    if step in placed:
        cursor.execute(slotsql.GRANT, {**params, "endpoint": placed[step]})
        if cursor.fetchone() is None:  # cancelled since SEATS looked
            return SlotAnswer(granted=False, position=-1)
        cursor.execute(slotsql.PROMOTE, params)
        return SlotAnswer(granted=True, position=0, endpoint=placed[step])
    cursor.execute(slotsql.JOIN_LINE, params)
    # Its place as every view counts it (one rule: projected, also while another step of its
    # owner holds the owner's place in the line); -1 when cancelled since SEATS looked.
    cursor.execute(slotsql.STILL_WAITING, params)
    if cursor.fetchone() is None:
        return SlotAnswer(granted=False, position=-1)
    position = _line(cursor, params, [params["step"]]).places.get(params["step"], 0)
    return SlotAnswer(granted=False, position=position)


def queue_positions(model: str, step_ids: Sequence[int]) -> dict[int, int]:
    """Each given step's place in `model`'s line for a slot (1 = next); absent when not in it.

    The one rule for a queue position: the engine's slot answers and every view of a run
    (pane, CLI, API) count the same waiters the same way.
    """
    return queue_line(model, step_ids).places


# The phases of a slot holder the server is answering (a response flows, or the holder runs
# quick tools between two answered turns).
SERVED = frozenset({StepPhase.PREFILL, StepPhase.GENERATING, StepPhase.TOOL})


@dataclass(frozen=True, kw_only=True)
class QueueLine:
    """A model's line for its slots as the views read it: `places` (queue_positions) for the
    waiters asked about; `held`, the seconds each of the model's holders has held its slot so
    far; `unavailable`, whether a step of the model found its server unavailable while no
    holder is being served (nobody's wait can be estimated then)."""

    places: dict[int, int]
    held: tuple[float, ...] = ()
    unavailable: bool = False


def queue_line(model: str, step_ids: Sequence[int]) -> QueueLine:
    if not step_ids:
        return QueueLine(places={})
    with connection.cursor() as cursor:
        return _line(cursor, _slot_params(model), step_ids)


def _line(cursor: CursorWrapper, params: dict[str, Any], step_ids: Sequence[int]) -> QueueLine:
    cursor.execute(slotsql.LINE, params)
    rows = cursor.fetchall()
    now = params["now"]
    wanted = set(step_ids)
    projected = projected_places([(row[0], row[1], row[3]) for row in rows if row[2]])
    return QueueLine(
        places={step_id: place for step_id, place in projected.items() if step_id in wanted},
        held=tuple(
            max(0.0, (now - row[5]).total_seconds()) if row[5] else 0.0 for row in rows if row[4]
        ),
        # Unavailable for everyone only while nobody is being served: one agent's 503 while
        # the server streams to others is that agent's wait, not the line's.
        unavailable=any(row[6] == StepPhase.UNAVAILABLE for row in rows)
        and not any(row[4] and row[6] in SERVED for row in rows),
    )


def projected_places(waiters: Sequence[tuple[int, int, bool]]) -> dict[int, int]:
    """Every waiter's place (1 = next) as the line will move: (step, owner, placed) in
    slotsql.SEATS order. The head is granted; when an owner's step in the line is granted,
    the owner's next waiter (claim order) joins at the end (slotsql.PROMOTE); an owner with
    waiters but none in the line sends its first at once, owners in claim order. A newcomer
    joins behind, so each grant moves every place up by one; a place goes back only when
    the line is reordered (another owner's step joining ahead of this owner's later ones,
    round robin; a step of the owner claimed earlier asking again after its tools)."""
    line: deque[tuple[int, int]] = deque()
    later: dict[int, deque[int]] = {}
    for step_id, owner, placed in waiters:
        if placed:
            line.append((step_id, owner))
        else:
            later.setdefault(owner, deque()).append(step_id)
    owners_in_line = {owner for _, owner in line}
    for owner, steps in later.items():  # in the order their first steps were claimed
        if owner not in owners_in_line:
            line.append((steps.popleft(), owner))
    places: dict[int, int] = {}
    while line:
        step_id, owner = line.popleft()
        places[step_id] = len(places) + 1
        if later.get(owner):
            line.append((later[owner].popleft(), owner))
    return places


def release_slot(
    step_id: int,
    worker: str,
    model: str,
    slots: Slots,
    *,
    tools: str | None = None,
    counted: bool = True,
) -> Handed:
    """Give back this step's slot once its request is closed, and hand it to the next in line;
    `tools` names the tool calls the step runs next (its phase says so meanwhile). `counted`
    false: the turn failed on this grant, which then does not enter the holding measured
    for wait estimates (runs.waits).

    Returns the steps that now hold a slot they asked for (and where); their worker may start
    their turn without asking again. A step holds a slot only while the model works for it,
    so no slot sits idle while its holder runs tools or checkpoints and another step is
    waiting. The step keeps its endpoint: its next turn prefers it (placement).
    """
    params = _slot_params(model, step=step_id, worker=worker)
    params["tools"] = clean_text(tools or "")[:300]
    params["counted"] = counted
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_model_slots(cursor, model)
        cursor.execute(slotsql.RELEASE if tools is None else slotsql.RELEASE_FOR_TOOLS, params)
        seats = _seats(cursor, params, slots)
        placed = _place(cursor, params, seats, [row for row in seats.rows if row[4]])
        granted: dict[int, str] = {}
        for waiter, endpoint in placed.items():
            cursor.execute(
                slotsql.GRANT, {**params, "step": waiter, "worker": "", "endpoint": endpoint}
            )
            if cursor.fetchone() is not None:
                granted[waiter] = endpoint
        cursor.execute(slotsql.PROMOTE, params)
        return Handed(granted)


def others_waiting(step_id: int, model: str) -> bool:
    """Whether a step of another owner waits for `model`'s slots (then a step gives its slot
    back for every tool run, however quick: round robin by owner comes before the cache)."""
    with connection.cursor() as cursor:
        cursor.execute(slotsql.OTHERS_WAITING, _slot_params(model, step=step_id))
        row = cursor.fetchone()
    return bool(row and row[0])


def _slot_params(model: str, **extra: Any) -> dict[str, Any]:
    active = [str(status) for status in ACTIVE_STEP]
    # Statuses that may hold a slot: the active ones, and a cancelled step whose agent has not
    # closed its request yet (listed so the status index still narrows the scan).
    slotted = [*active, str(StepStatus.CANCELLED)]
    return {"model": model, "active": active, "slotted": slotted, "now": timezone.now(), **extra}


def _lock_model_slots(cursor: CursorWrapper, model: str) -> None:
    """Serialise the slot decisions for `model` until the transaction ends, across workers."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"slot:{model}"])


def mark_streaming(step_id: int, worker: str) -> None:
    """The model's first byte of a turn arrived: the step is running and generating."""
    FlowStep.objects.filter(id=step_id, lease_owner=worker, status__in=ACTIVE_STEP).update(
        status=StepStatus.RUNNING,
        first_token_at=Coalesce("first_token_at", Value(timezone.now())),
        phase=StepPhase.GENERATING,
        phase_note="",
        phase_until=None,
    )


def set_phase(
    step_id: int, worker: str, phase: str, note: str = "", until: datetime | None = None
) -> None:
    """Say what the step is doing (retrying, waiting for the server...), while it is ours."""
    FlowStep.objects.filter(id=step_id, lease_owner=worker, status__in=ACTIVE_STEP).update(
        phase=phase, phase_note=clean_text(note)[:300], phase_until=until
    )


def release_step(step_id: int, worker: str, reason: str = "its worker was stopped") -> None:
    """Give a step back without finishing it (worker draining): any worker may claim it now.

    Its agent has stopped, so its request is closed and its slot may go.
    """
    with transaction.atomic():
        step = FlowStep.objects.filter(id=step_id, lease_owner=worker, status__in=ACTIVE_STEP)
        attempt = step.values_list("attempt", flat=True).first()
        if attempt is None:
            return
        step.update(**reset_step(Reset.RELEASE, timezone.now()))
        AgentSession.objects.filter(step_id=step_id, attempt=attempt).update(ended=reason)


@dataclass(frozen=True)
class Finished:
    """What finish_step did; truthy when the outcome was recorded."""

    recorded: bool
    # Dependants it made ready and leased to the same worker: their sessions are open, and
    # those granted a model slot at once say so (StepContext.holds_slot).
    claimed: tuple[StepContext, ...] = ()
    run_done: bool = False  # every step of the run is finished: its report is due

    def __bool__(self) -> bool:
        return self.recorded


def finish_step(
    step_id: int,
    worker: str,
    *,
    succeeded: bool,
    output: str = "",
    error: str = "",
    final_events: Sequence[AgentEvent] = (),
    claim: int = 0,
    slots: Slots = 0,
    truncated: bool = False,
) -> Finished:
    """Record the outcome, the attempt's last events and ready the dependants, in one
    transaction; lease up to `claim` of the dependants it readied to `worker`, open their
    sessions and, when one of the model's `slots` is free, grant them a slot, in it too.

    This is the hand-off: doing it here, from rows this transaction has read already, saves
    the dependant a wake-up, a sweep and three transactions (each a disk flush at commit)
    between its dependency finishing and its first model request. Returns a false Finished when this
    worker no longer owns the step (cancelled or taken over): then nothing is written, so a
    step is never completed twice.
    """
    run_id = FlowStep.objects.filter(id=step_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return Finished(recorded=False)
    with transaction.atomic():
        # Lock order everywhere: the run row first, then its steps.
        run = FlowRun.objects.select_for_update().get(id=run_id)
        updated = FlowStep.objects.filter(
            id=step_id, lease_owner=worker, status__in=ACTIVE_STEP
        ).update(
            **reset_step(
                Reset.FINISH,
                timezone.now(),
                status=StepStatus.SUCCEEDED if succeeded else StepStatus.FAILED,
                output=clean_text(output),
                error=clean_text(error),
                truncated=truncated,
            )
        )
        if not updated:
            return Finished(recorded=False)
        AgentEvent.objects.bulk_create(final_events)
        moved = advance(run, worker=worker, claim=claim if run.status == RunStatus.RUNNING else 0)
        opened = [open_attempt(step, run, worker, loaded=moved.steps) for step in moved.claimed]
        granted = _grant_at_once(run.model, worker, opened, slots)
    # The report is written after this commits (reporting.finalize_run): it reads the target
    # for every citation, which must not happen while the run's rows are locked.
    return Finished(recorded=True, claimed=tuple(granted), run_done=moved.done)


def _grant_at_once(
    model: str, worker: str, claimed: list[StepContext], slots: Slots
) -> list[StepContext]:
    """Grant the dependants a finishing step claimed a slot each while slots are free, if the
    model's slot lock is free right now. Never waiting for that lock keeps finish_step, which
    holds its run's rows, out of any lock cycle with the slot transactions; when it is busy
    the dependants ask for their slots themselves."""
    if not claimed or not any(cap > 0 for cap in slot_caps(slots).values()):
        return claimed
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))", [f"slot:{model}"])
        row = cursor.fetchone()
        if row is None or not row[0]:
            return claimed
        granted = []
        for ctx in claimed:
            params = _slot_params(model, step=ctx.step_id, worker=worker)
            answer = _take_slot(cursor, params, slots)
            granted.append(
                dataclasses.replace(ctx, holds_slot=answer.granted, slot_endpoint=answer.endpoint)
            )
    return granted


@dataclass(frozen=True)
class Advanced:
    steps: list[FlowStep]  # the run's steps, as advance left them
    claimed: list[FlowStep]  # leased to the worker that called advance

    @property
    def done(self) -> bool:
        """Every step is finished: the run can get its report."""
        return all(step.status in TERMINAL_STEP for step in self.steps)


def advance(run: FlowRun, *, worker: str = "", claim: int = 0) -> Advanced:
    """Move pending steps whose dependencies are all finished to ready (or skipped), leasing up
    to `claim` of the newly ready ones to `worker` straight away.

    Caller holds the run's row lock. That is enough: a step becomes finished, and a pending
    step changes, only under its run's lock, so two workers finishing sibling steps agree
    without locking the run's other steps (which their agents keep updating meanwhile).
    """
    steps = list(run.steps.order_by("position"))
    status = _next_statuses(steps)
    now = timezone.now()
    claimed: list[FlowStep] = []
    for step in steps:
        if status[step.key] == step.status:
            continue
        if status[step.key] == StepStatus.READY and len(claimed) < claim:
            _lease(step, worker, now)
            step.save(update_fields=reset.lease_fields())
            claimed.append(step)
            continue
        step.status = status[step.key]
        if step.status == StepStatus.SKIPPED:
            step.finished_at = now
            step.error = "a dependency did not succeed"
        step.save(update_fields=["status", "finished_at", "error"])
    return Advanced(steps=steps, claimed=claimed)


def _next_statuses(steps: list[FlowStep]) -> dict[str, str]:
    """Each step's status once every pending step whose dependencies finished has moved."""
    status: dict[str, str] = {step.key: step.status for step in steps}
    changed = True
    while changed:  # a skip can make the next step skippable too
        changed = False
        for step in steps:
            if status[step.key] != StepStatus.PENDING:
                continue
            deps = [status[d] for d in step.depends_on]
            if any(d not in TERMINAL_STEP for d in deps):
                continue
            ok = [d == StepStatus.SUCCEEDED for d in deps]
            runnable = all(ok) or (step.tolerates_failed_deps and any(ok))
            status[step.key] = StepStatus.READY if runnable else StepStatus.SKIPPED
            changed = True
    return status


def cancel_run(run_id: UUID) -> bool:
    """Stop a run: nothing new starts; running agents notice at their next heartbeat.

    A step in the middle of a model request keeps its slot, and the lease that makes it
    count, until its agent has closed the request and given the slot back (or the lease
    lapses): freeing it here would let a waiting step open a request beside the one still
    open, above the cap. The caller writes the partial report once this has committed
    (reporting.finalize_run).
    """
    with transaction.atomic():
        run = FlowRun.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.status in TERMINAL_RUN:
            return False
        now = timezone.now()
        unfinished = run.steps.exclude(status__in=TERMINAL_STEP)
        unfinished.filter(holds_slot=False).update(**reset_step(Reset.CANCEL, now))
        unfinished.filter(holds_slot=True).update(**reset_step(Reset.CANCEL, now, holds_slot=True))
        run.status = RunStatus.CANCELLED
        run.save(update_fields=["status"])
    return True


def retry_step(run_id: UUID, key: str) -> bool:
    """Re-run one unsuccessful step and everything downstream of it, keeping the rest."""
    return retry_steps(run_id, [key])


def retry_steps(run_id: UUID, keys: Sequence[str]) -> bool:
    """Re-run unsuccessful steps (a cancelled run's, say) and what is downstream of them."""
    with transaction.atomic():
        run = FlowRun.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.status not in TERMINAL_RUN:
            return False
        steps = {step.key: step for step in run.steps.select_for_update()}
        roots = [steps.get(key) for key in keys]
        if not roots or any(r is None or r.status == StepStatus.SUCCEEDED for r in roots):
            return False
        redo = set(keys)
        grew = True
        while grew:
            grew = False
            for step in steps.values():
                if step.key not in redo and redo & set(step.depends_on):
                    redo.add(step.key)
                    grew = True
        now = timezone.now()
        FlowStep.objects.filter(run=run, key__in=redo).update(**reset_step(Reset.RETRY, now))
        # Pending again, so the retry passes its owner's cap like a launch (queue.fairness);
        # the claim makes it running. It keeps its launch time, so it is first of theirs to go;
        # the time it sat finished is idle, not part of its elapsed time.
        if run.finished_at is not None and now > run.finished_at:
            run.idle_spans = [*run.idle_spans, [run.finished_at.isoformat(), now.isoformat()]]
        run.status = RunStatus.PENDING
        run.finished_at = None
        run.report = run.summary = run.confidence = run.error = ""
        run.report_data = {}
        run.save()
        advance(run)
    return True
