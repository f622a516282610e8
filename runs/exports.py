"""A run's report as files, and sent to a chat. Never written into the target.

What leaves here passes through runs.engine.target.secrets.redact: a private key or a URL credential
that reached a step's output or the report somehow still does not leave. A step's output leaves
without its reasoning blocks (flows.model_text), which only the agent's stream shows.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.conf import settings

from flows.model_text import strip_reasoning
from runs.engine.target.secrets import redact
from runs.labels import run_state
from runs.models import ChatMessage, FlowRun, RunStatus

log = logging.getLogger(__name__)


def report_markdown(run: FlowRun) -> str:
    """The report; a run that did not plainly succeed says first how it ended (a report whose
    agents partly failed reads like a clean one otherwise)."""
    if run.status == RunStatus.SUCCEEDED or not run.report:
        return redact(run.report)
    return redact(f"**Run {status_text(run)}**\n\n{run.report}")


def status_text(run: FlowRun) -> str:
    """The run's status in words: "finished with failures (1 agent failed)"."""
    return run_state(run).text


def run_as_json(run: FlowRun) -> dict[str, Any]:
    return _redacted(
        {
            "run": {
                "id": str(run.id),
                "flow": run.flow,
                "band": run.band,
                "fast": run.fast,
                "target": run.target,
                "focus": run.focus,
                "model": run.model,
                "endpoint": run.endpoint_url,
                "slots": run.slots,
                "server_slots": run.server_slots,
                "status": run.status,
                "status_words": status_text(run),
                "failed_agents": run.failed_agents,
                "created_at": run.created_at.isoformat(),
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                "tokens_in": run.tokens_in,
                "tokens_out": run.tokens_out,
            },
            "steps": [
                {
                    "key": s.key,
                    "role": s.role,
                    "kind": s.kind,
                    "status": s.status,
                    "attempt": s.attempt,
                    "tokens_in": s.tokens_in,
                    "tokens_out": s.tokens_out,
                    "tokens_spent_in": s.counters.tokens_spent_in,
                    "tokens_spent_out": s.counters.tokens_spent_out,
                    "cached_tokens": s.cached_tokens,
                    "decode_tokens_per_second": s.decode_rate,
                    "truncated": s.truncated,
                    "tool_calls": s.tool_calls,
                    # reasoning stays in the agent's stream, out of every export
                    "output": strip_reasoning(s.output),
                    "error": s.error,
                }
                for s in run.steps.all()
            ],
            # the pane's linked copy of the report is not an export of its own
            "report": {
                "markdown": run.report,
                **{k: v for k, v in run.report_data.items() if k != "linked_report"},
            },
        }
    )


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def send_to_chat(run: FlowRun, user: Any) -> str:
    """POST the report to ORCHESTRATOR_CHAT_WEBHOOK, or into the workspace's chat pane."""
    text = (
        f"Orchestrator report: {run.flow} on {run.target} ({status_text(run)})\n\n"
        f"{redact(run.report)}"
    )
    webhook = settings.ORCHESTRATOR_CHAT_WEBHOOK
    if not webhook:
        ChatMessage.objects.create(owner=user, run=run, text=text)
        return "sent to the workspace chat"
    try:
        response = httpx.post(
            webhook, json={"text": text, "run": str(run.id)}, timeout=10, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        log.warning("chat webhook failed: %s", exc)
        return f"the chat did not answer ({type(exc).__name__})"
    if response.status_code >= 400:
        return f"the chat refused it ({response.status_code})"
    return "sent to chat"
