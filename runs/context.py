"""Loading what a step attempt needs from the database, and checkpointing its turns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from django.db import transaction

from flows.models import Depth, StepKind
from flows.prompts import RunBrief, UpstreamOutput, system_prompt, user_prompt
from flows.registry import get_flow
from runs.modelconfig import DEMO_PROVIDER
from runs.models import AgentSession, FlowStep, StepStatus


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
    turns_completed: int
    tool_calls: int
    tokens_in: int
    tokens_out: int
    last_tool: str


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
        run = step.run
        flow = get_flow(run.flow)
        definition = flow.step(step.key)
        depth = flow.depth.for_mode(fast=run.fast)
        previous = step.sessions.filter(turns_completed__gt=0).order_by("-attempt").first()
        if previous is not None:
            transcript = list(previous.transcript)
            carried = previous
        else:
            brief = RunBrief(
                flow=flow,
                band=run.band,
                fast=run.fast,
                focus=run.focus,
                target_name=Path(run.target).name,
            )
            transcript = [
                {"role": "system", "content": system_prompt(brief, definition, depth)},
                {"role": "user", "content": user_prompt(brief, definition, _upstream(step))},
            ]
            carried = None
        session, _ = AgentSession.objects.update_or_create(
            step=step,
            attempt=step.attempt,
            defaults={
                "worker": worker,
                "backend": "scripted" if run.model.startswith(DEMO_PROVIDER + "/") else "openai",
                "model": run.model,
                "transcript": transcript,
                "turns_completed": carried.turns_completed if carried else 0,
                "resumed_from_turn": carried.turns_completed if carried else 0,
                "tool_calls": carried.tool_calls if carried else 0,
                "tokens_in": carried.tokens_in if carried else 0,
                "tokens_out": carried.tokens_out if carried else 0,
            },
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
        depth=depth,
        transcript=transcript,
        turns_completed=session.turns_completed,
        tool_calls=session.tool_calls,
        tokens_in=session.tokens_in,
        tokens_out=session.tokens_out,
        last_tool=step.last_tool,
    )


def _upstream(step: FlowStep) -> list[UpstreamOutput]:
    if not step.depends_on:
        return []
    deps = FlowStep.objects.filter(run_id=step.run_id, key__in=step.depends_on).order_by("position")
    return [
        UpstreamOutput(
            key=dep.key,
            role=dep.role,
            succeeded=dep.status == StepStatus.SUCCEEDED,
            text=dep.output,
        )
        for dep in deps
        if dep.kind != StepKind.VALIDATOR
    ]


def checkpoint(ctx: StepContext, messages: list[dict[str, Any]], totals: dict[str, Any]) -> None:
    """Persist a completed turn, so a resumed attempt continues from here."""
    with transaction.atomic():
        AgentSession.objects.filter(id=ctx.session_id).update(
            transcript=messages,
            turns_completed=totals["turns"],
            tool_calls=totals["tool_calls"],
            tokens_in=totals["tokens_in"],
            tokens_out=totals["tokens_out"],
        )
        FlowStep.objects.filter(id=ctx.step_id, lease_owner=ctx.worker).update(
            tool_calls=totals["tool_calls"],
            tokens_in=totals["tokens_in"],
            tokens_out=totals["tokens_out"],
            last_tool=totals["last_tool"],
        )
