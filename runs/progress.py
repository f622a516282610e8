"""The words for what each agent is doing, for the pane and the terminal alike (one owner).

`step_state(step, position)` says it: waiting for a slot (with its place in line), waiting for
the server's first byte, generating, running a tool, retrying (which try, next try in N s),
server unavailable, and the finished states. `step_numbers(step)` gives the counts beside it:
tokens kept and spent, prompt tokens reused from the server's cache, decode speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.utils import timezone

from runs.engine import scheduler
from runs.models import ACTIVE_STEP, FlowRun, FlowStep, StepPhase, StepStatus


def queue_positions(run: FlowRun) -> dict[int, int]:
    """This run's steps waiting for a model slot, and each one's place in the model's line."""
    waiting = run.steps.filter(status__in=ACTIVE_STEP, wants_slot=True, holds_slot=False)
    return scheduler.queue_positions(run.model, list(waiting.values_list("id", flat=True)))


@dataclass(frozen=True, kw_only=True)
class State:
    """What a step is doing, in words: `label` is short (a badge), `detail` says more."""

    key: str  # a stable word for styling: a status, or an active step's phase
    label: str
    detail: str = ""
    waiting: bool = False  # not making progress of its own (in a line, or waiting to retry)

    @property
    def text(self) -> str:
        return f"{self.label} ({self.detail})" if self.detail else self.label


_FINISHED: dict[str, str] = {
    StepStatus.PENDING: "waiting for its dependencies",
    StepStatus.READY: "waiting for a worker",
    StepStatus.SKIPPED: "a dependency did not succeed",
    StepStatus.CANCELLED: "the run was cancelled",
}


def step_state(step: FlowStep, position: int | None = None, now: datetime | None = None) -> State:
    """The truth about a step at this moment; `position` is its place in its model's line
    for a slot (from queue_positions), when it is in it."""
    if step.status not in ACTIVE_STEP:
        return _settled_state(step)
    state = _active_state(step, position, now or timezone.now())
    if step.attempt > 1:
        attempt = f"attempt {step.attempt}"
        detail = f"{state.detail}; {attempt}" if state.detail else attempt
        return State(key=state.key, label=state.label, detail=detail, waiting=state.waiting)
    return state


def _settled_state(step: FlowStep) -> State:
    if step.status == StepStatus.FAILED:
        return State(key=step.status, label="failed", detail=step.error)
    if step.status == StepStatus.SUCCEEDED and step.truncated:
        return State(key=step.status, label="succeeded", detail="answer cut off at the limit")
    return State(key=step.status, label=str(step.status), detail=_FINISHED.get(step.status, ""))


def _active_state(step: FlowStep, position: int | None, now: datetime) -> State:
    phase = step.phase
    if phase == StepPhase.SLOT or (step.wants_slot and not step.holds_slot):
        where = f"#{position} in line" if position else "in line"
        return State(key="slot", label="waiting for a slot", detail=where, waiting=True)
    if phase in (StepPhase.RETRYING, StepPhase.UNAVAILABLE):
        due = step.phase_until
        if due is not None and due > now:
            seconds = max(1, round((due - now).total_seconds()))
            label = "retrying" if phase == StepPhase.RETRYING else "server unavailable"
            detail = f"{step.phase_note}; next try in {seconds} s"
            return State(key=phase, label=label, detail=detail, waiting=True)
        return State(
            key="first_byte", label="waiting for the server's first byte", detail=step.phase_note
        )
    if phase == StepPhase.FIRST_BYTE or (phase == "" and step.holds_slot):
        return State(key="first_byte", label="waiting for the server's first byte")
    if phase == StepPhase.GENERATING:
        return State(key="generating", label="generating")
    if phase == StepPhase.TOOL:
        return State(key="tool", label="running a tool", detail=step.phase_note)
    return State(key="starting", label="starting", detail="claimed by a worker")


@dataclass(frozen=True, kw_only=True)
class Numbers:
    """A step's counts: tokens the transcript keeps and every attempt spent, the share of
    prompt tokens the server reused from its cache, and its decode speed (None: unknown)."""

    tokens_in: int
    tokens_out: int
    spent_in: int
    spent_out: int
    cache_reuse: float | None  # 0..1
    decode_rate: float | None  # tokens per second
    tool_calls: int

    @property
    def tokens(self) -> str:
        kept = f"{self.tokens_in}/{self.tokens_out}"
        if (self.spent_in, self.spent_out) == (self.tokens_in, self.tokens_out):
            return kept
        return f"{kept} (spent {self.spent_in}/{self.spent_out})"

    @property
    def cache(self) -> str:
        return "" if self.cache_reuse is None else f"cache {self.cache_reuse:.0%}"

    @property
    def speed(self) -> str:
        return "" if self.decode_rate is None else f"{self.decode_rate:.1f} tok/s"


def step_numbers(step: FlowStep) -> Numbers:
    return Numbers(
        tokens_in=step.tokens_in,
        tokens_out=step.tokens_out,
        spent_in=max(step.tokens_spent_in, step.tokens_in),
        spent_out=max(step.tokens_spent_out, step.tokens_out),
        cache_reuse=step.cache_reuse,
        decode_rate=step.decode_rate,
        tool_calls=step.tool_calls,
    )


def step_line(step: FlowStep, position: int | None = None, width: int = 18) -> str:
    state = step_state(step, position)
    numbers = step_numbers(step)
    elapsed = step.elapsed_seconds
    parts = [
        f"{step.key:<{width}}",
        f"{state.label:<34}",
        f"{elapsed:6.1f}s" if elapsed is not None else "     -",
        f"tokens {numbers.tokens}",
        f"tools {numbers.tool_calls}",
    ]
    parts += [text for text in (numbers.cache, numbers.speed) if text]
    if state.detail and step.status != StepStatus.FAILED:
        parts.append(state.detail)
    if step.status in ACTIVE_STEP and step.last_tool and state.key != "tool":
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
    # Run-level warnings (a slot cap above the server's slots), printed once.
    notes: tuple[str, ...] = ()


def snapshot(run_id: UUID) -> Snapshot:
    run = FlowRun.objects.get(id=run_id)
    steps = list(run.steps.all())
    positions = queue_positions(run)
    width = max((len(s.key) for s in steps), default=10) + 2
    header = f"{run.flow} · band {run.band}{' · fast' if run.fast else ''} · {run.status}"
    states = {}
    for s in steps:
        state = step_state(s, positions.get(s.id))
        # A retry's countdown changes every second; its log line changes with the try.
        retrying = state.key in (StepPhase.RETRYING, StepPhase.UNAVAILABLE)
        words = f"{state.label} ({s.phase_note})" if retrying else state.text
        states[s.key] = (words, s.last_tool)
    return Snapshot(
        header=header,
        lines=[step_line(s, positions.get(s.id), width) for s in steps],
        states=states,
        notes=tuple(note for note in (run.slot_warning,) if note),
    )
