"""The scheduler: claims, leases, model slots and the DAG, all as PostgreSQL transactions.

Every function here is synchronous and does one short transaction, so a test can drive the
scheduler step by step. Workers on several machines may call these at once: row locks
(SKIP LOCKED), conditional UPDATEs and one advisory lock per model keep them honest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from runs.models import (
    ACTIVE_STEP,
    TERMINAL_RUN,
    TERMINAL_STEP,
    FlowRun,
    FlowStep,
    RunStatus,
    StepStatus,
)

log = logging.getLogger(__name__)


def lease_delta() -> timedelta:
    return timedelta(seconds=settings.ORCHESTRATOR_LEASE_SECONDS)


def claim_steps(worker: str, limit: int, *, run_id: UUID | None = None) -> list[int]:
    """Take up to `limit` ready steps (or steps whose worker died) and lease them to `worker`.

    A reclaimed step becomes attempt N+1; its agent continues from the last checkpointed turn.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    claimable = Q(status=StepStatus.READY) | Q(status__in=ACTIVE_STEP, lease_expires_at__lt=now)
    with transaction.atomic():
        query = (
            FlowStep.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(claimable, run__status__in=[RunStatus.PENDING, RunStatus.RUNNING])
            .order_by("run__created_at", "position")
        )
        if run_id is not None:
            query = query.filter(run_id=run_id)
        steps = list(query[:limit])
        for step in steps:
            if step.status in ACTIVE_STEP:
                log.info("reclaiming %s of run %s from %s", step.key, step.run_id, step.lease_owner)
            step.status = StepStatus.QUEUED
            step.attempt += 1
            step.lease_owner = worker
            step.lease_expires_at = now + lease_delta()
            step.holds_slot = False
            step.queued_at = now
            step.error = ""
        FlowStep.objects.bulk_update(
            steps,
            [
                "status",
                "attempt",
                "lease_owner",
                "lease_expires_at",
                "holds_slot",
                "queued_at",
                "error",
            ],
        )
        run_ids = {step.run_id for step in steps}
        FlowRun.objects.filter(id__in=run_ids, status=RunStatus.PENDING).update(
            status=RunStatus.RUNNING, started_at=now
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
    position: int  # 0 when granted; else how many steps are ahead in the model's queue


def try_acquire_slot(step_id: int, worker: str, model: str, slots: int) -> SlotAnswer:
    """Take one of the model's `slots` for this step, first come first served, across workers."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Serialises slot decisions for this model for the length of this transaction.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"slot:{model}"])
        live = FlowStep.objects.filter(
            run__model=model, status__in=ACTIVE_STEP, lease_expires_at__gt=now
        )
        me = live.filter(id=step_id, lease_owner=worker).first()
        if me is None:
            return SlotAnswer(granted=False, position=-1)
        if me.holds_slot:
            return SlotAnswer(granted=True, position=0)
        held = live.filter(holds_slot=True).count()
        ahead = (
            live.filter(holds_slot=False)
            .filter(Q(queued_at__lt=me.queued_at) | Q(queued_at=me.queued_at, id__lt=me.id))
            .count()
        )
        free = slots - held
        if ahead < free:
            FlowStep.objects.filter(id=step_id).update(holds_slot=True, started_at=now)
            return SlotAnswer(granted=True, position=0)
        return SlotAnswer(granted=False, position=ahead - max(free, 0) + 1)


def mark_streaming(step_id: int, worker: str) -> None:
    """The model's first byte arrived: the step leaves `queued`."""
    now = timezone.now()
    FlowStep.objects.filter(id=step_id, lease_owner=worker, status=StepStatus.QUEUED).update(
        status=StepStatus.RUNNING
    )
    FlowStep.objects.filter(id=step_id, first_token_at__isnull=True).update(first_token_at=now)


def release_step(step_id: int, worker: str) -> None:
    """Give a step back without finishing it (worker draining): any worker may claim it now."""
    FlowStep.objects.filter(id=step_id, lease_owner=worker, status__in=ACTIVE_STEP).update(
        lease_expires_at=timezone.now(), holds_slot=False
    )


def finish_step(
    step_id: int, worker: str, *, succeeded: bool, output: str = "", error: str = ""
) -> bool:
    """Record the outcome and ready the dependants, in one transaction.

    Returns False when this worker no longer owns the step (cancelled or taken over): then
    nothing is written, so a step is never completed twice.
    """
    from runs.reporting import finalize_run_if_done

    run_id = FlowStep.objects.filter(id=step_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        # Lock order everywhere: the run row first, then its steps.
        run = FlowRun.objects.select_for_update().get(id=run_id)
        updated = FlowStep.objects.filter(
            id=step_id, lease_owner=worker, status__in=ACTIVE_STEP
        ).update(
            status=StepStatus.SUCCEEDED if succeeded else StepStatus.FAILED,
            output=output,
            error=error,
            finished_at=timezone.now(),
            holds_slot=False,
            lease_expires_at=None,
        )
        if not updated:
            return False
        advance(run)
        finalize_run_if_done(run)
    return True


def advance(run: FlowRun) -> None:
    """Move pending steps whose dependencies are all finished to ready (or skipped).

    Caller holds the run's row lock, so two workers finishing sibling steps agree.
    """
    steps = list(run.steps.select_for_update().order_by("id"))
    status = {step.key: step.status for step in steps}
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
    for step in steps:
        if status[step.key] != step.status:
            step.status = status[step.key]
            if step.status == StepStatus.SKIPPED:
                step.finished_at = timezone.now()
                step.error = "a dependency did not succeed"
            step.save(update_fields=["status", "finished_at", "error"])


def cancel_run(run_id: UUID) -> bool:
    """Stop a run: nothing new starts; running agents notice at their next heartbeat."""
    from runs.reporting import finalize_run_if_done

    with transaction.atomic():
        run = FlowRun.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.status in TERMINAL_RUN:
            return False
        now = timezone.now()
        run.steps.exclude(status__in=TERMINAL_STEP).update(
            status=StepStatus.CANCELLED, finished_at=now, holds_slot=False, lease_expires_at=None
        )
        run.status = RunStatus.CANCELLED
        run.save(update_fields=["status"])
        finalize_run_if_done(run)
    return True


def retry_step(run_id: UUID, key: str) -> bool:
    """Re-run one unsuccessful step and everything downstream of it, keeping the rest."""
    with transaction.atomic():
        run = FlowRun.objects.select_for_update().filter(id=run_id).first()
        if run is None or run.status not in TERMINAL_RUN:
            return False
        steps = {step.key: step for step in run.steps.select_for_update()}
        root = steps.get(key)
        if root is None or root.status == StepStatus.SUCCEEDED:
            return False
        redo = {key}
        grew = True
        while grew:
            grew = False
            for step in steps.values():
                if step.key not in redo and redo & set(step.depends_on):
                    redo.add(step.key)
                    grew = True
        FlowStep.objects.filter(run=run, key__in=redo).update(
            status=StepStatus.PENDING,
            output="",
            error="",
            finished_at=None,
            first_token_at=None,
            started_at=None,
            lease_owner="",
            lease_expires_at=None,
        )
        run.status = RunStatus.RUNNING
        run.finished_at = None
        run.report = run.summary = run.confidence = run.error = ""
        run.report_data = {}
        run.save()
        advance(run)
    return True
