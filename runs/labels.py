"""What a run's and a step's states are called: the one module that turns them into words.

The pane, the history, the stream's status lines, the timeline, the terminal, the exports and
the admin all ask here, so a state reads the same everywhere (tests/test_one_vocabulary.py
checks that no other module spells these words). `run_state` is a run's badge; `step_state`
says what an agent is doing at this moment: its label (the badge) and its detail (its place in
the model's line, the dependencies it waits for, its run's cap, the attempt, the reason).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from runs.models import (
    ACTIVE_STEP,
    TERMINAL_STEP,
    FlowRun,
    FlowStep,
    RunStatus,
    StepPhase,
    StepStatus,
)

# A run's status in words (its badge).
RUN_WORDS: dict[str, str] = {
    RunStatus.PENDING: "pending",
    RunStatus.RUNNING: "running",
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.FINISHED_WITH_FAILURES: "finished with failures",
    RunStatus.FAILED: "failed",
    RunStatus.CANCELLED: "cancelled",
}
# What an active step is doing at this turn (its phase), in words.
PHASE_WORDS: dict[str, str] = {
    StepPhase.SLOT: "waiting for a model slot",
    StepPhase.FIRST_BYTE: "waiting for the server's first byte",
    StepPhase.PREFILL: "reading the prompt",
    StepPhase.GENERATING: "generating",
    StepPhase.TOOL: "running a tool",
    StepPhase.RETRYING: "retrying",
    StepPhase.UNAVAILABLE: "server unavailable",
}
# The state keys the agent's stream events carry (runs.engine.agent), as the phase they report.
EVENT_PHASES: dict[str, str] = {
    "queued": StepPhase.SLOT,
    "waiting_first_byte": StepPhase.FIRST_BYTE,
    "running": StepPhase.GENERATING,
    "retrying": StepPhase.RETRYING,
    "unavailable": StepPhase.UNAVAILABLE,
}

# Progress groups for the run header, in the order they are shown.
PROGRESS_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("done", frozenset({StepStatus.SUCCEEDED})),
    ("running", frozenset({StepStatus.RUNNING})),
    ("queued", frozenset({StepStatus.QUEUED, StepStatus.READY})),
    ("waiting", frozenset({StepStatus.PENDING})),
    ("failed", frozenset({StepStatus.FAILED})),
    ("skipped", frozenset({StepStatus.SKIPPED})),
    ("cancelled", frozenset({StepStatus.CANCELLED})),
)
# Shown even at zero: a person looks for these four numbers first.
ALWAYS_SHOWN = frozenset({"done", "running", "queued", "failed"})


def run_state(run: FlowRun, steps: Sequence[FlowStep] | None = None, *, held: str = "") -> State:
    """The run's badge. A running run says "running" only while one of its agents does
    something (generates, waits for its first byte, runs a tool); while all of them wait it
    says what for. `held`: why a pending run waits (its owner's cap, from
    runs.engine.queue.fairness)."""
    status = run.status
    if status == RunStatus.PENDING:
        if held:
            return State(key="held", label="waiting", detail=held, waiting=True)
        # A retried run is pending again, with the agents that succeeded kept.
        detail = "retried, waiting for a worker" if run.started_at else "no agent has started yet"
        return State(key=status, label="pending", detail=detail, waiting=True)
    if status == RunStatus.FINISHED_WITH_FAILURES:
        failed = run.failed_agents
        detail = f"{failed} agent{'s' if failed != 1 else ''} failed"
        return State(key=status, label=RUN_WORDS[status], detail=detail)
    if status != RunStatus.RUNNING or steps is None:
        return State(key=status, label=RUN_WORDS.get(status, str(status)))
    if steps and all(step.status in TERMINAL_STEP for step in steps):
        # Between the last agent's end and the report (reporting.finalize_run): not idle.
        return State(key=status, label=RUN_WORDS[status], detail="writing the report")
    states = [step_state(step) for step in steps if step.status in ACTIVE_STEP]
    if any(not state.waiting for state in states):
        return State(key=status, label=RUN_WORDS[status])
    if states and all(state.key == StepPhase.SLOT for state in states):
        return State(key="slot", label=PHASE_WORDS[StepPhase.SLOT], waiting=True)
    doing = ", ".join(sorted({state.label for state in states}))
    return State(key="waiting", label="waiting", detail=doing or "for a worker", waiting=True)


def duration(seconds: float | None, *, tenths: bool = False) -> str:
    """12.3 s; 4 min 18 s (4 min 18.2 s with tenths); 1 h 02 min. The pane's ticking clocks
    follow the same rule (static/orchestrator/pane.js, `duration`)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        if tenths:  # a clock: truncated, so it never shows a tenth that has not passed
            minutes, rest = divmod(int(seconds * 10), 600)
            return f"{minutes} min {rest / 10:.1f} s"
        minutes, rest_seconds = divmod(round(seconds), 60)
        return f"{minutes} min {rest_seconds} s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True, kw_only=True)
class State:
    """What a run or a step is doing, in words: `label` is short (a badge), `detail` says more."""

    key: str  # a stable word for styling: a status, or an active step's phase
    label: str
    detail: str = ""
    waiting: bool = False  # not making progress of its own (in a line, or waiting to retry)
    # When the detail's "next try in N s" reaches zero (ms since the epoch; 0: no countdown):
    # the pane counts it down between redraws (static/orchestrator/pane.js, tickCountdowns).
    due_ms: int = 0

    @property
    def text(self) -> str:
        return f"{self.label} ({self.detail})" if self.detail else self.label


def place_words(position: int | None, wait: float | None = None) -> str:
    """A step's place in its model's line for a slot, and the wait estimated for it (seconds,
    runs.waits; infinite while the server is unavailable): "2nd in line, about 40 s"."""
    place = f"{ordinal(position)} in line" if position else "in line"
    if wait is not None and math.isinf(wait):
        return f"{place}, no estimate while the model server is unavailable"
    return f"{place}, {about(wait)}" if wait is not None else place


def about(seconds: float) -> str:
    """An estimate in words, no more precise than it is: about 5 s, 40 s, 3 min, 1 h 20 min."""
    if seconds < 10:
        return f"about {max(1, round(seconds))} s"
    if (fives := round(seconds / 5) * 5) < 60:
        return f"about {fives} s"
    if (minutes := round(seconds / 60)) < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(round(seconds / 600) * 10, 60)
    return f"about {hours} h {minutes:02d} min" if minutes else f"about {hours} h"


def prompt_progress_words(processed: int, total: int, cache: int) -> str:
    """How far the server has read the prompt (llama.cpp's counts, already sane: 0 <= cache
    <= processed <= total, total > 0): "45%: 1,200 of 2,650 tokens, 900 from cache"."""
    percent = processed * 100 // total if total > 0 else 0
    words = f"{percent}%: {processed:,} of {total:,} tokens"
    return f"{words}, {cache:,} from cache" if cache else words


def step_state(
    step: FlowStep,
    position: int | None = None,
    now: datetime | None = None,
    *,
    waiting_on: Sequence[str] = (),
    held: str = "",
    wait: float | None = None,
) -> State:
    """The truth about a step at this moment, the only words pane, CLI, timeline and exports
    show for it. `position`: its place in its model's line for a slot (from
    queue_positions); `waiting_on`: the titles of its unfinished dependencies; `held`: why
    its run has not started (its owner's cap); `wait`: the seconds its wait for a slot is
    estimated at (runs.waits; None: no estimate)."""
    if step.status not in ACTIVE_STEP:
        return _settled_state(step, waiting_on, held)
    state = _active_state(step, position, now or timezone.now(), wait)
    if step.attempt > 1:
        attempt = f"attempt {step.attempt}"
        detail = f"{state.detail}; {attempt}" if state.detail else attempt
        return State(key=state.key, label=state.label, detail=detail, waiting=state.waiting)
    return state


def _settled_state(step: FlowStep, waiting_on: Sequence[str], held: str) -> State:
    status = step.status
    if status in (StepStatus.PENDING, StepStatus.READY):
        # Not claimed yet: for its dependencies, for its owner's cap, or for a worker.
        if status == StepStatus.PENDING:
            detail = f"for {', '.join(waiting_on)}" if waiting_on else "for its dependencies"
        else:
            detail = held or "for a worker"
        return State(key=status, label="waiting", detail=detail, waiting=True)
    if status == StepStatus.FAILED:
        return State(key=status, label="failed", detail=step.error)
    if status == StepStatus.SKIPPED:
        return State(key=status, label="skipped", detail=step.error or _SKIPPED)
    if status == StepStatus.SUCCEEDED and step.truncated:
        return State(key=status, label="succeeded", detail="answer cut off at the limit")
    if status == StepStatus.CANCELLED:
        return State(key=status, label="cancelled", detail="stopped when the run was cancelled")
    return State(key=status, label=str(status))


_SKIPPED = "a dependency did not succeed"


def _active_state(step: FlowStep, position: int | None, now: datetime, wait: float | None) -> State:
    phase = step.phase
    if phase == StepPhase.SLOT or (step.wants_slot and not step.holds_slot):
        return phase_state(StepPhase.SLOT, position=position, wait=wait)
    if phase in (StepPhase.RETRYING, StepPhase.UNAVAILABLE):
        due = step.phase_until
        if due is not None and due > now:
            seconds = max(1, round((due - now).total_seconds()))
            detail = f"{step.phase_note}; next try in {seconds} s"
            due_ms = round(due.timestamp() * 1000)
            return State(
                key=phase, label=PHASE_WORDS[phase], detail=detail, waiting=True, due_ms=due_ms
            )
        return phase_state(StepPhase.FIRST_BYTE, note=step.phase_note)
    if phase == StepPhase.FIRST_BYTE or (phase == "" and step.holds_slot):
        return phase_state(StepPhase.FIRST_BYTE)
    if phase in (StepPhase.GENERATING, StepPhase.TOOL, StepPhase.PREFILL):
        return phase_state(phase, note=step.phase_note if phase != StepPhase.GENERATING else "")
    return State(key="starting", label="starting", detail="claimed by a worker")


def phase_state(
    phase: str, *, position: int | None = None, note: str = "", wait: float | None = None
) -> State:
    """An active step's phase in words (the row's badge and its stream's status lines)."""
    if phase == StepPhase.SLOT:
        return State(
            key=phase, label=PHASE_WORDS[phase], detail=place_words(position, wait), waiting=True
        )
    waiting = phase in (StepPhase.RETRYING, StepPhase.UNAVAILABLE)
    return State(key=phase, label=PHASE_WORDS[phase], detail=note, waiting=waiting)


# The run timeline's stretches (runs.timeline), named as the rows name the same moments.
STRETCH_WORDS: dict[str, str] = {
    "waiting": "waiting (for dependencies, a worker or your run cap)",
    "queued": PHASE_WORDS[StepPhase.SLOT],
    "first-byte": PHASE_WORDS[StepPhase.FIRST_BYTE],
    "model": PHASE_WORDS[StepPhase.GENERATING],
    "tools": PHASE_WORDS[StepPhase.TOOL],
    "retrying": "waiting to try again after the server failed a turn",
    "earlier": "an earlier attempt",
    "idle": "idle: the run had finished, until a retry",
}


def waiting_on(
    depends_on: list[str], statuses: Mapping[str, str], titles: Mapping[str, str]
) -> list[str]:
    """The titles of the dependencies that have not finished yet."""
    unfinished = [key for key in depends_on if statuses.get(key) not in TERMINAL_STEP]
    return [titles.get(key, key) for key in unfinished]


def progress_counts(statuses: list[str]) -> list[tuple[str, int]]:
    """(group, count) for the header, zero groups left out except the four always shown."""
    counts = []
    for group, members in PROGRESS_GROUPS:
        count = sum(1 for status in statuses if status in members)
        if count or group in ALWAYS_SHOWN:
            counts.append((group, count))
    return counts


def event_words(payload: dict[str, object]) -> str:
    """A status event in an agent's stream, in the words its row uses for the same moment."""
    state = str(payload.get("state", ""))
    phase = EVENT_PHASES.get(state)
    if phase in (StepPhase.RETRYING, StepPhase.UNAVAILABLE):
        words = (
            f"{PHASE_WORDS[phase]} (attempt {payload.get('attempt')}): {payload.get('reason', '')}"
        )
        return f"{words} · {payload['detail']}" if payload.get("detail") else words
    if phase is not None:
        position = payload.get("position")
        place = position if isinstance(position, int) and not isinstance(position, bool) else None
        return phase_state(phase, position=place).text
    if state == "resumed":
        return f"resumed after turn {payload.get('turn')}"
    if state == "stopped":
        return f"stopped: {payload.get('detail', '')}"
    # Other states (turn counts, a cut-off answer, a tool being called) carry their own words.
    words = state
    if payload.get("reason"):
        words += f": {payload['reason']}"
    if payload.get("detail"):
        words += f" · {payload['detail']}"
    return words
