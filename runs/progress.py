"""One line per agent, for the terminal: status, elapsed, tokens, current tool."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from runs.engine import fairness, scheduler
from runs.labels import step_words
from runs.models import ACTIVE_STEP, FlowRun, FlowStep, StepStatus


def queue_positions(run: FlowRun) -> dict[int, int]:
    """This run's steps waiting for a model slot, and each one's place in the model's line."""
    waiting = run.steps.filter(status__in=ACTIVE_STEP, wants_slot=True, holds_slot=False)
    return scheduler.queue_positions(run.model, list(waiting.values_list("id", flat=True)))


def status_label(step: FlowStep, position: int | None) -> str:
    """The status with its words (runs.labels owns them), e.g. `queued (waiting for a model
    slot, 2nd)`."""
    words = step_words(
        status=step.status,
        position=position,
        holds_slot=step.holds_slot,
        attempt=step.attempt,
    )
    return f"{step.status} ({words})" if words and step.status in ACTIVE_STEP else str(step.status)


def step_line(step: FlowStep, position: int | None = None, width: int = 18) -> str:
    elapsed = step.elapsed_seconds
    parts = [
        f"{step.key:<{width}}",
        f"{status_label(step, position):<44}",
        f"{elapsed:6.1f}s" if elapsed is not None else "     -",
        f"tokens {step.tokens_in}/{step.tokens_out}",
        f"tools {step.tool_calls}",
    ]
    if step.status in ACTIVE_STEP and step.last_tool:
        parts.append(step.last_tool)
    if step.status == StepStatus.FAILED and step.error:
        parts.append(f"error: {step.error}")
    return "  ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    header: str
    lines: list[str]
    # What is worth a new log line when it changes: per agent, its state and current tool.
    states: dict[str, tuple[str, str]]


def snapshot(run_id: UUID) -> Snapshot:
    run = FlowRun.objects.get(id=run_id)
    steps = list(run.steps.all())
    positions = queue_positions(run)
    width = max((len(s.key) for s in steps), default=10) + 2
    header = f"{run.flow} · band {run.band}{' · fast' if run.fast else ''} · {run.status}"
    if waiting := fairness.waiting_reason(run):
        header += f" ({waiting})"
    return Snapshot(
        header=header,
        lines=[step_line(s, positions.get(s.id), width) for s in steps],
        states={s.key: (status_label(s, positions.get(s.id)), s.last_tool) for s in steps},
    )
