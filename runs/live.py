"""The pane's pieces, rendered from named partials for pages, HTMX and WebSocket pushes alike."""

from __future__ import annotations

from typing import Any

from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from runs.markup import render_markdown
from runs.models import ACTIVE_STEP, AgentEvent, FlowRun, FlowStep
from runs.progress import queue_positions, step_numbers, step_state

PANE = "runs/pane.html"


def step_context(run: FlowRun, steps: list[FlowStep] | None = None) -> list[dict[str, Any]]:
    """Rows for the agent list: the run is the parent, its steps the children."""
    steps = steps if steps is not None else list(run.steps.all())
    waiting = any(s.status in ACTIVE_STEP and s.wants_slot for s in steps)
    positions = queue_positions(run) if waiting else {}
    return [
        {
            "step": s,
            "position": positions.get(s.id),
            # What the agent is doing (runs.progress owns the words) and its counts.
            "state": step_state(s, positions.get(s.id)),
            "numbers": step_numbers(s),
        }
        for s in steps
    ]


def run_context(run: FlowRun) -> dict[str, Any]:
    return {
        **header_context(run),
        "rows": step_context(run),
        "report_html": mark_safe(render_markdown(run.report)) if run.report else "",  # noqa: S308
    }


def render_header(run: FlowRun, *, oob: bool = False) -> str:
    return render_to_string(f"{PANE}#run-header", {**header_context(run), "oob": oob})


def header_context(run: FlowRun) -> dict[str, Any]:
    """Token totals are summed live from the steps until the run writes its own."""
    if run.is_finished:
        tokens = (run.tokens_in, run.tokens_out)
    else:
        totals = run.steps.aggregate(i=Sum("tokens_in"), o=Sum("tokens_out"))
        tokens = (totals["i"] or 0, totals["o"] or 0)
    return {
        "run": run,
        "tokens_in": tokens[0],
        "tokens_out": tokens[1],
        "slot_warning": run.slot_warning,
    }


def render_report(run: FlowRun, *, oob: bool = False) -> str:
    return render_to_string(f"{PANE}#report", {**run_context(run), "oob": oob})


def render_rows(run: FlowRun, steps: list[FlowStep], *, oob: bool = False) -> str:
    """Several rows; queue positions are counted once for all of them, not once per row."""
    return "".join(
        render_to_string(f"{PANE}#agent-summary", {"row": row, "run": run, "oob": oob})
        for row in step_context(run, steps)
    )


def render_events(step_id: int, events: list[dict[str, Any]]) -> str:
    """Events appended to one agent's stream (OOB beforeend), ids kept for resuming."""
    return render_to_string(
        f"{PANE}#stream-append", {"step_id": step_id, "events": [_shape(e) for e in events]}
    )


def stored_events(step_id: int, after_id: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
    rows = AgentEvent.objects.filter(step_id=step_id, id__gt=after_id).order_by("id")[:limit]
    return [event.as_message() for event in rows]


def _shape(event: dict[str, Any]) -> dict[str, Any]:
    payload = event.get("payload") or {}
    # The event's own id and kind win over payload keys (a tool call carries an "id" too).
    return {**payload, "id": event["id"], "kind": event["kind"]}
