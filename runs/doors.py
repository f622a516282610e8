"""What the launch API and the MCP server tell a host about flows and runs.

Both doors answer from here, so a run's state and the flow catalog read the same through
either. Words for states come from runs.labels, the report from runs.exports.
"""

from __future__ import annotations

from typing import Any

from flows.models import BANDS
from flows.registry import CATALOG
from runs import labels, waits
from runs.engine.queue import fairness
from runs.models import FlowRun, RunStatus
from runs.progress import queue_line
from runs.targets import TargetRefused, check_run


def flow_catalog() -> list[dict[str, Any]]:
    """Every flow with what each band runs (its agents' roles), in menu order."""
    return [
        {
            "slug": flow.slug,
            "title": flow.title,
            "description": flow.description,
            "kind": flow.kind.value,
            "in_slash_menu": flow.in_slash_menu,
            "bands": {
                band: [
                    {"key": step.key, "role": step.role, "title": step.title, "kind": step.kind}
                    for step in flow.roster(band)
                ]
                for band in BANDS
            },
        }
        for flow in CATALOG.values()
    ]


def withheld(user: Any, run: FlowRun) -> str:
    """Why this user may no longer read the run's report text (runs.targets), or ""."""
    try:
        check_run(user, run)
    except TargetRefused as exc:
        return str(exc)
    return ""


def run_state(run: FlowRun, user: Any) -> dict[str, Any]:
    """A run's status and its agents, as a host shows them; the summary and confidence are
    report text, so they are left out for a user whose directory was taken back (None: the
    operator)."""
    refused = withheld(user, run)
    waiting = (
        fairness.waiting_reasons([run.id]).get(run.id, "")
        if run.status == RunStatus.PENDING
        else ""
    )
    steps = list(run.steps.order_by("position"))
    state = labels.run_state(run, steps, held=waiting)
    # Waiters for a model slot: their place and estimated wait, as the pane says them.
    line = queue_line(run) if any(s.waits_for_slot for s in steps) else None
    places = line.places if line else {}
    estimates = waits.slot_waits(run, line) if line else {}
    return {
        "id": str(run.id),
        "flow": run.flow,
        "band": run.band,
        "fast": run.fast,
        "target": run.target,
        "focus": run.focus,
        "origin": run.origin,
        "status": run.status,
        "status_label": state.label,
        "status_detail": state.detail,
        "finished": run.is_finished,
        "waiting": waiting,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "summary": "" if refused else run.summary,
        "confidence": "" if refused else run.confidence,
        "report_withheld": refused,
        "error": run.error,
        "report_ready": bool(run.report),
        "pane_url": run.get_absolute_url(),
        "agents": [
            {
                "key": step.key,
                "role": step.role,
                "title": step.title,
                "status": step.status,
                "state": labels.step_state(
                    step, places.get(step.id), wait=estimates.get(step.id)
                ).text,
                "attempt": step.attempt,
                "error": step.error,
                # The model server (base URL) of its slot, or of its last turn; "" before any.
                "endpoint": step.endpoint,
            }
            for step in steps
        ],
    }


def state_line(run: FlowRun) -> str:
    """One line for a plain client: the run's status, then each agent's."""
    state = run_state(run, None)  # the agents' states only: no report text in this line
    agents = "; ".join(f"{a['title']}: {a['state']}" for a in state["agents"])
    waiting = f" ({state['waiting']})" if state["waiting"] else ""
    head = f"Run {state['id']} ({state['flow']}, {state['band']}): {state['status_label']}"
    return f"{head}{waiting}. {agents}"
