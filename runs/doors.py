"""What the launch API and the MCP server tell a host about flows and runs.

Both doors answer from here, so a run's state and the flow catalog read the same through
either. Words for states come from runs.labels, the report from runs.exports.
"""

from __future__ import annotations

from typing import Any

from flows.models import BANDS
from flows.registry import CATALOG
from runs import labels
from runs.engine.queue import fairness
from runs.models import FlowRun, RunStatus


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


def run_state(run: FlowRun) -> dict[str, Any]:
    """A run's status and its agents, as a host shows them."""
    waiting = (
        fairness.waiting_reasons([run.id]).get(run.id, "")
        if run.status == RunStatus.PENDING
        else ""
    )
    steps = list(run.steps.order_by("position"))
    state = labels.run_state(run, steps, held=waiting)
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
        "summary": run.summary,
        "confidence": run.confidence,
        "error": run.error,
        "report_ready": bool(run.report),
        "pane_url": run.get_absolute_url(),
        "agents": [
            {
                "key": step.key,
                "role": step.role,
                "title": step.title,
                "status": step.status,
                "state": labels.step_state(step).text,
                "attempt": step.attempt,
                "error": step.error,
            }
            for step in steps
        ],
    }


def state_line(run: FlowRun) -> str:
    """One line for a plain client: the run's status, then each agent's."""
    state = run_state(run)
    agents = "; ".join(f"{a['title']}: {a['state']}" for a in state["agents"])
    waiting = f" ({state['waiting']})" if state["waiting"] else ""
    head = f"Run {state['id']} ({state['flow']}, {state['band']}): {state['status_label']}"
    return f"{head}{waiting}. {agents}"
