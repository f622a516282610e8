"""The host workspace: ChatPane and CoderPane with the shared composer, the launch door both
of them use (slash command or Orchestrator button), and what the workspace remembers per
person (each pane's project, the orchestrator panes left open)."""

from __future__ import annotations

import unicodedata
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from flows.models import BANDS, FlowKind
from flows.registry import CATALOG, slash_menu
from runs.band_durations import median_durations
from runs.engine.web.tools import web_configured
from runs.labels import duration
from runs.markup import render_markdown
from runs.models import ChatMessage, FlowRun, HostPane, Origin, WorkspaceLayout
from runs.permissions import visible_runs
from runs.services import LaunchError, launch_run, launch_settings
from runs.targets import default_directory

HOST_PANES = (HostPane.CHAT, HostPane.CODER)
TITLES = {HostPane.CHAT: "Chat", HostPane.CODER: "Coder"}
MAX_OPEN_PANES = 8  # the oldest falls off the list (its run goes on; it is in the history)
MAX_TARGET_CHARS = 1000
CHAT_MESSAGES = 20


@login_required
def workspace(request: HttpRequest) -> HttpResponse:
    layout = WorkspaceLayout.objects.filter(owner_id=request.user.pk).first()
    remembered = layout.targets if layout else {}
    default_target = default_directory(request.user)
    context: dict[str, Any] = {
        "panes": [
            {
                "kind": kind,
                "title": TITLES[kind],
                "target": _clean_target(remembered.get(kind)) or default_target,
            }
            for kind in HOST_PANES
        ],
        "open_runs": _open_runs(request, layout),
        "bands": BANDS,  # the flows' own list: the launcher offers what a flow can run
        "slash_flows": [
            {"slug": f.slug, "title": f.title, "description": f.description} for f in slash_menu()
        ],
        "flow_groups": [
            ("Analysis", [f for f in CATALOG.values() if f.kind == FlowKind.ANALYSIS]),
            ("Drafts", [f for f in CATALOG.values() if f.kind == FlowKind.DRAFT]),
        ],
        "catalog_size": len(CATALOG),
        "band_facts": band_facts(request.user),
        "chat": chat_messages(request.user),
        "relaunch": _relaunch(request),
        "web_available": web_configured(),
    }
    return render(request, "runs/workspace.html", context)


def band_facts(user: Any) -> dict[str, dict[str, dict[str, str]]]:
    """For the launcher, per flow and band: which agents it runs, and how long such runs
    took here before (the median of this person's finished runs), or that none ran yet."""
    took = median_durations(user)
    facts: dict[str, dict[str, dict[str, str]]] = {}
    for flow in CATALOG.values():
        facts[flow.slug] = {}
        for band in BANDS:
            roster = flow.roster(band)
            seen = took.get((flow.slug, band))
            facts[flow.slug][band] = {
                "agents": f"{len(roster)} agents: " + ", ".join(step.title for step in roster),
                "took": (
                    f"took {duration(seen[0])} here (median of {seen[1]} "
                    f"run{'s' if seen[1] != 1 else ''})"
                    if seen
                    else "no runs yet"
                ),
            }
    return facts


def _relaunch(request: HttpRequest) -> dict[str, Any] | None:
    """The settings of the run named by `?from=` (re-run with changes): the launcher opens
    filled in with them. Another person's run, or no run, opens nothing."""
    try:
        run_id = UUID(request.GET.get("from", ""))
    except ValueError:
        return None
    run = visible_runs(request.user).filter(id=run_id).first()
    return launch_settings(run) if run is not None else None


def _open_runs(request: HttpRequest, layout: WorkspaceLayout | None) -> list[FlowRun]:
    """The remembered panes that still lead somewhere, newest first."""
    if layout is None or not layout.open_runs:
        return []
    runs = {run.id: run for run in visible_runs(request.user).filter(id__in=layout.open_runs)}
    return [runs[run_id] for run_id in layout.open_runs if run_id in runs]


def chat_messages(user: Any) -> list[dict[str, Any]]:
    """The chat pane's last messages, oldest first, each rendered whole and sanitised."""
    newest = ChatMessage.objects.filter(owner_id=user.pk).order_by("-created_at", "-id")
    messages = list(newest[:CHAT_MESSAGES])[::-1]
    visible = set(
        visible_runs(user)
        .filter(id__in=[m.run_id for m in messages if m.run_id])
        .values_list("id", flat=True)
    )
    return [
        {
            "message": message,
            "html": mark_safe(render_markdown(message.text)),  # noqa: S308 - sanitised by nh3
            "run_id": message.run_id if message.run_id in visible else None,
        }
        for message in messages
    ]


@login_required
@require_GET
def chat_log(request: HttpRequest) -> HttpResponse:
    """The chat pane's log alone, for a workspace to refresh when a report is sent to it."""
    return render(request, "runs/workspace.html#chat-log", {"chat": chat_messages(request.user)})


@login_required
@require_POST
def remember(request: HttpRequest) -> HttpResponse:
    """Remember a pane's project (`pane`, `target`), open a run's pane (`open`: the run's
    id; answers with the pane's markup) or forget a closed pane (`close`)."""
    data = request.POST
    pane, target, close = data.get("pane"), data.get("target"), data.get("close")
    if data.get("open") is not None:
        run_id = _uuid(data["open"])
        run = visible_runs(request.user).filter(id=run_id).first() if run_id else None
        if run is None:
            return HttpResponse("no such run", status=404)
        remember_open(request.user, run)
        return render(request, "runs/workspace.html#orchestrator-pane", {"run": run})
    if pane is not None and target is not None:
        if pane not in HOST_PANES:
            return HttpResponse("unknown pane", status=400)
        clean = _clean_target(target)
        if clean is None:
            return HttpResponse(
                f"a project directory is a path of at most {MAX_TARGET_CHARS} characters,"
                " without control characters",
                status=400,
            )
        with transaction.atomic():
            layout = _locked_layout(request.user)
            layout.targets = {**layout.targets, pane: clean}
            layout.save(update_fields=["targets", "updated_at"])
        return HttpResponse(status=204)
    if close is not None:
        run_id = _uuid(close)
        if run_id is None:
            return HttpResponse("not a run id", status=400)
        with transaction.atomic():
            layout = _locked_layout(request.user)
            layout.open_runs = [r for r in layout.open_runs if r != run_id]
            layout.save(update_fields=["open_runs", "updated_at"])
        return HttpResponse(status=204)
    return HttpResponse("say which pane and target, or which pane to close", status=400)


def remember_open(user: Any, run: FlowRun) -> None:
    """A run launched from the workspace opens as a pane there, on every device."""
    with transaction.atomic():
        layout = _locked_layout(user)
        kept = [r for r in layout.open_runs if r != run.id]
        layout.open_runs = [run.id, *kept][:MAX_OPEN_PANES]
        layout.save(update_fields=["open_runs", "updated_at"])


def _locked_layout(user: Any) -> WorkspaceLayout:
    WorkspaceLayout.objects.get_or_create(owner_id=user.pk)
    return WorkspaceLayout.objects.select_for_update().get(owner_id=user.pk)


def _clean_target(raw: Any) -> str | None:
    """A project path as typed, or None when it cannot be one (control bytes, too long)."""
    if not isinstance(raw, str) or len(raw) > MAX_TARGET_CHARS:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in raw):
        return None
    return raw.strip()


def _uuid(raw: str) -> UUID | None:
    try:
        return UUID(raw)
    except (ValueError, AttributeError):
        return None


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
            web=data.get("web") in {"1", "true", "on"},
        )
    except LaunchError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    remember_open(request.user, run)
    pane = render_to_string("runs/workspace.html#orchestrator-pane", {"run": run}, request=request)
    return JsonResponse(
        {
            "id": str(run.id),
            "url": run.get_absolute_url(),
            "flow": run.flow,
            "band": run.band,
            "pane": pane,
        },
        status=201,
    )
