"""What a run's and a step's states are called, for the pane, the history and the terminal.

One owner for the words: the templates and `progress` ask here, so a state reads the same
everywhere. The badge is the status itself; `step_words` adds what the status alone cannot
say (which place in the model's queue, which dependencies, which attempt).
"""

from __future__ import annotations

from collections.abc import Mapping

from runs.models import ACTIVE_STEP, TERMINAL_STEP, RunStatus, StepStatus

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
    if state == "retrying":
        return f"retrying (attempt {payload.get('attempt')}): {payload.get('reason', '')}"
    if state == "resumed":
        return f"resumed after turn {payload.get('turn')}"
    if state == "stopped":
        return f"stopped: {payload.get('detail', '')}"
    return state
