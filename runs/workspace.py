"""The host workspace: ChatPane and CoderPane with the shared composer, and the launch door
both of them use (slash command or Orchestrator button)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from flows.models import FlowKind
from flows.registry import CATALOG, slash_menu
from runs.models import ChatMessage, HostPane, Origin
from runs.services import LaunchError, launch_run


@login_required
def workspace(request: HttpRequest) -> HttpResponse:
    default_target = str(settings.ORCHESTRATOR_ALLOWED_ROOTS[0])
    context: dict[str, Any] = {
        "panes": [
            {"kind": HostPane.CHAT, "title": "Chat", "target": default_target},
            {"kind": HostPane.CODER, "title": "Coder", "target": default_target},
        ],
        "slash_flows": [
            {"slug": f.slug, "title": f.title, "description": f.description} for f in slash_menu()
        ],
        "flow_groups": [
            ("Analysis", [f for f in CATALOG.values() if f.kind == FlowKind.ANALYSIS]),
            ("Drafts", [f for f in CATALOG.values() if f.kind == FlowKind.DRAFT]),
        ],
        "catalog_size": len(CATALOG),
        "messages_for_chat": ChatMessage.objects.filter(owner_id=request.user.pk).order_by(
            "-created_at"
        )[:20],
    }
    return render(request, "runs/workspace.html", context)


@login_required
@require_POST
def launch(request: HttpRequest) -> JsonResponse:
    """One endpoint for both doors; bad input is a 400 with a sentence, never a traceback."""
    data = request.POST
    origin = data.get("origin", Origin.BUTTON)
    try:
        run = launch_run(
            flow=data.get("flow", "").strip(),
            target=data.get("target", ""),
            band=data.get("band", "small") or "small",
            fast=data.get("fast") in {"1", "true", "on"},
            focus=data.get("focus", ""),
            owner=request.user,
            origin=origin if origin in {Origin.SLASH, Origin.BUTTON} else Origin.BUTTON,
            host_pane=data.get("host_pane", HostPane.NONE),
        )
    except LaunchError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(
        {"id": str(run.id), "url": run.get_absolute_url(), "flow": run.flow, "band": run.band},
        status=201,
    )
