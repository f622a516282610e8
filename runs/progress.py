"""One line per agent, for the terminal: the words runs.labels owns, and the counts.

`step_state(step, position)` (runs.labels, re-exported here) says what an agent is doing:
waiting for a slot (with its place in line), waiting for the server's first byte, generating,
running a tool, retrying (which try, next try in N s), server unavailable, and the finished
states. `step_numbers(step)` gives the counts beside it:
tokens kept and spent, prompt tokens reused from the server's cache, decode speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from flows.report import rate
from runs import waits
from runs.engine.queue import fairness, scheduler
from runs.labels import State, run_state, step_state, waiting_on
from runs.models import ACTIVE_STEP, FlowRun, FlowStep, StepPhase, StepStatus

__all__ = [
    "Numbers",
    "State",
    "queue_line",
    "queue_positions",
    "snapshot",
    "status_label",
    "step_line",
    "step_numbers",
    "step_state",
]


def queue_positions(run: FlowRun) -> dict[int, int]:
    """This run's steps waiting for a model slot, and each one's place in the model's line."""
    return queue_line(run).places


def queue_line(run: FlowRun) -> scheduler.QueueLine:
    """This run's waiters for a model slot: their places in the model's line (as it will
    move), and what their waits are estimated from (runs.waits)."""
    waiting = run.steps.filter(status__in=ACTIVE_STEP, wants_slot=True, holds_slot=False)
    return scheduler.queue_line(run.model, list(waiting.values_list("id", flat=True)))


def status_label(step: FlowStep, position: int | None) -> str:
    """The step's state in words (runs.labels owns them), with what it adds."""
    return step_state(step, position).text


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
        words = rate(self.decode_rate)
        return f"{words} tok/s" if words else ""


def step_numbers(step: FlowStep) -> Numbers:
    return Numbers(
        tokens_in=step.tokens_in,
        tokens_out=step.tokens_out,
        spent_in=step.counters.tokens_spent_in,
        spent_out=step.counters.tokens_spent_out,
        cache_reuse=step.cache_reuse,
        decode_rate=step.decode_rate,
        tool_calls=step.tool_calls,
    )


def step_line(
    step: FlowStep, position: int | None = None, width: int = 18, state: State | None = None
) -> str:
    state = state or step_state(step, position)
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
    line = queue_line(run)
    positions = line.places
    slot_waits = waits.slot_waits(run, line)
    width = max((len(s.key) for s in steps), default=10) + 2
    held = fairness.waiting_reason(run)
    header = f"{run.flow} · band {run.band}{' · fast' if run.fast else ''} · "
    header += run_state(run, steps, held=held).text
    statuses = {s.key: s.status for s in steps}
    titles = {s.key: s.title for s in steps}
    states = {}
    lines = []
    for s in steps:
        state = step_state(
            s,
            positions.get(s.id),
            waiting_on=waiting_on(s.depends_on, statuses, titles),
            held=held,
        )
        # A retry's countdown changes every second; its log line changes with the try. The
        # prompt's progress changes with every batch; its log line once, when reading starts.
        retrying = state.key in (StepPhase.RETRYING, StepPhase.UNAVAILABLE)
        words = f"{state.label} ({s.phase_note})" if retrying else state.text
        words = state.label if state.key == StepPhase.PREFILL else words
        states[s.key] = (words, s.last_tool)
        # The live line adds the estimated wait; the log line would change with every estimate.
        if s.id in slot_waits:
            state = step_state(s, positions.get(s.id), wait=slot_waits[s.id])
        lines.append(step_line(s, positions.get(s.id), width, state))
    return Snapshot(
        header=header,
        lines=lines,
        states=states,
        notes=tuple(note for note in (run.slot_warning,) if note),
    )
