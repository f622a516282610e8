"""Live status for hosts that do not frame the pane: server-sent events at
`/api/v1/runs/<id>/events`.

Plain and bounded: the view reads the run from the database about once a second and sends a
`status` event whenever the run's or an agent's state changed, a `report` event once the report
is written, then `end` when the run is over. It stops when the client leaves (Django cancels
the stream) and after MAX_STREAM_SECONDS at the latest (the client reconnects). The database is
the truth; nothing here depends on the channel layer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from runs import api_tokens, doors
from runs.permissions import token_runs

POLL_SECONDS = 1.0
MAX_STREAM_SECONDS = 3600


# A bearer token, never the session cookie, reads the stream; CSRF has nothing to guard, and
# its HTML 403 would hide the JSON 405 below.
@csrf_exempt
async def run_events(request: HttpRequest, run_id: UUID) -> HttpResponseBase:
    if request.method != "GET":
        refused = JsonResponse({"error": f"{request.method} is not allowed here; use GET"})
        refused.status_code, refused["Allow"] = 405, "GET"
        return refused
    user = await sync_to_async(api_tokens.bearer_user)(request.headers.get("Authorization", ""))
    if user is None:
        return JsonResponse(
            {"error": "a valid API token is required (Authorization: Bearer <token>)"},
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not await token_runs(user).filter(id=run_id).aexists():
        return JsonResponse({"error": "no such run"}, status=404)
    response = StreamingHttpResponse(_stream(user, run_id), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the events back
    return response


async def _stream(user: Any, run_id: UUID) -> AsyncIterator[str]:
    last: dict[str, Any] | None = None
    reported = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_STREAM_SECONDS
    while True:
        state = await sync_to_async(_state)(user, run_id)
        if state is None:  # deleted meanwhile
            yield _event("end", {"id": str(run_id), "status": "gone"})
            return
        changed = _shape(state)
        if changed != last:
            last = changed
            yield _event("status", state)
        if state["report_ready"] and not reported:
            reported = True
            yield _event(
                "report",
                {
                    "id": state["id"],
                    "summary": state["summary"],
                    "confidence": state["confidence"],
                    "markdown_url": f"/api/v1/runs/{state['id']}/report",
                    "json_url": f"/api/v1/runs/{state['id']}/report.json",
                },
            )
        if state["finished"]:
            yield _event("end", {"id": state["id"], "status": state["status"]})
            return
        if loop.time() >= deadline:
            yield _event("timeout", {"id": state["id"], "reconnect": True})
            return
        await asyncio.sleep(POLL_SECONDS)


def _state(user: Any, run_id: UUID) -> dict[str, Any] | None:
    run = token_runs(user).filter(id=run_id).first()
    return doors.run_state(run, user) if run else None


def _shape(state: dict[str, Any]) -> dict[str, Any]:
    """What counts as a change: the run's status and each agent's state, not the clock."""
    return {
        "status": state["status"],
        "waiting": state["waiting"],
        "report_ready": state["report_ready"],
        "agents": [(a["key"], a["status"], a["state"]) for a in state["agents"]],
    }


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"
