"""Opening a step attempt from the database, and checkpointing its turns.

An attempt starts one of two ways (`Start`): *resume* continues the same attempt's
checkpointed transcript and counters (after a crash or a lost lease), *fresh* builds a new
transcript from the current upstream outputs (a first attempt, or the first after a retry:
earlier sessions then belong to the attempts before the retry and are never resumed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction

from flows.models import Depth, StepKind
from flows.prompts import RunBrief, UpstreamOutput, opening_messages
from flows.registry import get_flow
from runs.engine.agent.counters import SESSION_FIELDS, Counters
from runs.engine.agent.modelconfig import DEMO_PROVIDER
from runs.engine.storable import clean_text, storable
from runs.engine.web.tools import uses_web
from runs.models import AgentSession, FlowRun, FlowStep, StepStatus


class Start(StrEnum):
    RESUME = "resume"  # the transcript and counters of this retry's last checkpoint
    FRESH = "fresh"  # a new transcript from the current upstream outputs


@dataclass(frozen=True, kw_only=True)
class StepContext:
    run_id: UUID
    step_id: int
    session_id: int
    worker: str
    key: str
    kind: str
    attempt: int
    model_id: str
    target: Path
    depth: Depth
    transcript: list[dict[str, Any]]
    start: Start
    # Kept: this attempt's checkpoint (zero when fresh); spent: every attempt so far.
    counters: Counters
    holds_slot: bool = False  # granted a model slot together with its claim
    slot_endpoint: str = ""  # where that slot is (one of the model's endpoints)
    # What the target was at launch (runs.engine.target.confinement.open_target checks it again).
    target_real_path: str = ""
    target_identity: str = ""
    flow_kind: str = ""  # analysis or draft: which step kinds answer schema-shaped
    # The run's endpoint, recorded at launch ("" = this worker's own configuration).
    endpoint_url: str = ""
    # Set when this attempt is one too many: why, as the step's error; nothing is run.
    exhausted: str = ""
    # This step is a web role of a run that allows the web: it gets web_search and web_fetch.
    web: bool = False
    focus: str = ""  # the run's focus text (URLs in it may be fetched)


def load_context(step_id: int, worker: str) -> StepContext | None:
    """Open this attempt's session, continuing the transcript of the last attempt if any."""
    with transaction.atomic():
        step = (
            FlowStep.objects.select_related("run")
            .filter(id=step_id, lease_owner=worker, status=StepStatus.QUEUED)
            .first()
        )
        if step is None:
            return None
        return open_attempt(step, step.run, worker)


def open_attempt(
    step: FlowStep, run: FlowRun, worker: str, *, loaded: Sequence[FlowStep] = ()
) -> StepContext:
    """Open the session of the attempt `worker` has just claimed (inside the claim's
    transaction); `loaded` may hold the run's steps, read already, for the upstream outputs."""
    flow = get_flow(run.flow)
    definition = flow.step(step.key)
    depth = flow.depth.for_mode(fast=run.fast)
    previous = _last_checkpointed(step)
    if previous is not None:
        start = Start.RESUME
        transcript = list(previous.transcript)
        counters = step.counters.replace(
            turns=previous.turns_completed,
            tool_calls=previous.tool_calls,
            tokens_in=previous.tokens_in,
            tokens_out=previous.tokens_out,
        )
    else:
        start = Start.FRESH
        counters = step.counters.fresh()
        brief = RunBrief(
            flow=flow,
            band=run.band,
            fast=run.fast,
            focus=run.focus,
            target_name=Path(run.target).name,
            web=uses_web(run),
        )
        upstream = _upstream(step, loaded)
        transcript = opening_messages(brief, definition, depth, upstream)
    session = AgentSession(
        step=step,
        attempt=step.attempt,
        worker=worker,
        backend="scripted" if run.model.startswith(DEMO_PROVIDER + "/") else "openai",
        model=run.model,
        transcript=transcript,
        resumed_from_turn=counters.turns,
        **counters.session_fields(),
    )
    # One INSERT ... ON CONFLICT (an upsert, should this attempt's session exist already):
    # this runs between a dependency finishing and the dependant's first request.
    AgentSession.objects.bulk_create(
        [session],
        update_conflicts=True,
        unique_fields=["step", "attempt"],
        update_fields=SESSION_UPDATE_FIELDS,
    )
    return StepContext(
        run_id=run.id,
        step_id=step.id,
        session_id=session.id,
        worker=worker,
        key=step.key,
        kind=step.kind,
        attempt=step.attempt,
        model_id=run.model,
        target=Path(run.target),
        target_real_path=run.target_real_path,
        target_identity=run.target_identity,
        depth=depth,
        transcript=transcript,
        start=start,
        counters=counters,
        flow_kind=flow.kind,
        endpoint_url=run.endpoint_url,
        exhausted=_exhausted(step),
        web=definition.web and uses_web(run),
        focus=run.focus,
    )


def _exhausted(step: FlowStep) -> str:
    """Why this attempt must not run: the earlier ones since the latest retry used up
    ORCHESTRATOR_MAX_ATTEMPTS (a retry is a person's decision and starts the count again)."""
    limit = settings.ORCHESTRATOR_MAX_ATTEMPTS
    if step.attempts_this_retry <= limit:
        return ""
    earlier = step.sessions.filter(attempt__lt=step.attempt, attempt__gt=step.attempt_base)
    last = earlier.order_by("-attempt").first()
    why = (last.ended if last else "") or "its worker stopped heart-beating and its lease lapsed"
    return (
        f"gave up after {step.attempts_this_retry - 1} attempts without an outcome "
        f"(ORCHESTRATOR_MAX_ATTEMPTS={limit}); the last one ended: {why}"
    )


# What an upsert of an attempt's session writes when the session exists already.
SESSION_UPDATE_FIELDS = [
    "worker",
    "backend",
    "model",
    "transcript",
    "resumed_from_turn",
    *SESSION_FIELDS,
]


def _last_checkpointed(step: FlowStep) -> AgentSession | None:
    """The latest earlier attempt since the latest retry with a completed turn: what a
    resumed attempt continues (none for the first attempt, or the first after a retry)."""
    if step.attempts_this_retry <= 1:
        return None
    since_retry = step.sessions.filter(attempt__gt=step.attempt_base, attempt__lt=step.attempt)
    return since_retry.filter(turns_completed__gt=0).order_by("-attempt").first()


def _upstream(step: FlowStep, loaded: Sequence[FlowStep]) -> list[UpstreamOutput]:
    if not step.depends_on:
        return []
    deps = [dep for dep in loaded if dep.key in step.depends_on]
    if len(deps) != len(step.depends_on):
        deps = list(FlowStep.objects.filter(run_id=step.run_id, key__in=step.depends_on))
    return [
        UpstreamOutput(
            key=dep.key,
            role=dep.role,
            succeeded=dep.status == StepStatus.SUCCEEDED,
            text=dep.output,
        )
        for dep in sorted(deps, key=lambda dep: dep.position)
        if dep.kind != StepKind.VALIDATOR
    ]


def checkpoint(ctx: StepContext, messages: list[dict[str, Any]], counters: Counters) -> None:
    """Persist a completed turn, so a resumed attempt continues from here.

    The transcript holds model text and file contents: it is made storable here, the one
    place checkpoints are written.
    """
    with transaction.atomic():
        AgentSession.objects.filter(id=ctx.session_id).update(
            transcript=storable(messages), **counters.session_fields()
        )
        record_counters(ctx, counters)


def record_counters(ctx: StepContext, counters: Counters) -> None:
    """Write the step's counters (tokens kept and spent, timings, tools) as they stand; also
    for an attempt that fails or is cancelled between checkpoints, so nothing spent is lost.
    A cancelled step is still this worker's to count."""
    fields = counters.replace(last_tool=clean_text(counters.last_tool)[:200]).step_fields()
    FlowStep.objects.filter(id=ctx.step_id, lease_owner=ctx.worker).update(**fields)
