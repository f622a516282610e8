"""What a run's and a step's states are called, for the pane, the history and the terminal.

One owner for the words: the templates and `progress` ask here, so a state reads the same
everywhere. `step_state` says what an agent is doing at this moment (the badge: waiting for a
slot, for the server's first byte, generating, running a tool, retrying, server unavailable);
`step_words` adds what the status alone cannot say (which place in the model's queue, which
dependencies, which attempt).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from runs.models import ACTIVE_STEP, TERMINAL_STEP, FlowStep, RunStatus, StepPhase, StepStatus

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


def run_status_label(status: str) -> str:
    """The run's badge: its status, capitalised."""
    return RunStatus(status).label if status in RunStatus.values else str(status)


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


def queue_words(position: int | None, *, holds_slot: bool) -> str:
    """A queued step's place, in words."""
    if holds_slot:
        return "waiting for the model's first byte"
    if position:
        return f"waiting for a model slot, {ordinal(position)}"
    return "waiting for a model slot"


def step_words(
    *,
    status: str,
    position: int | None = None,
    holds_slot: bool = False,
    attempt: int = 0,
    waiting_on: list[str] | None = None,
    error: str = "",
) -> str:
    """What the badge cannot say: the queue place, the dependencies, the attempt, the reason."""
    words = ""
    if status == StepStatus.QUEUED:
        words = queue_words(position, holds_slot=holds_slot)
    elif status == StepStatus.PENDING:
        words = f"waiting for {', '.join(waiting_on)}" if waiting_on else "waiting"
    elif status == StepStatus.READY:
        words = "ready, waiting for a worker"
    elif status in (StepStatus.FAILED, StepStatus.SKIPPED):
        words = error
    elif status == StepStatus.CANCELLED:
        words = "stopped when the run was cancelled"
    if attempt > 1 and status in ACTIVE_STEP:
        words = f"{words}, attempt {attempt}" if words else f"attempt {attempt}"
    return words


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
    """A status event in an agent's stream, in words."""
    state = str(payload.get("state", ""))
    position = payload.get("position")
    if state == "queued":
        place = position if isinstance(position, int) else None
        return f"queued: {queue_words(place, holds_slot=False)}"
    if state == "waiting_first_byte":
        return f"model slot granted; {queue_words(None, holds_slot=True)}"
    if state in ("retrying", "unavailable"):
        word = "retrying" if state == "retrying" else "server unavailable"
        words = f"{word} (attempt {payload.get('attempt')}): {payload.get('reason', '')}"
        return f"{words} · {payload['detail']}" if payload.get("detail") else words
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
