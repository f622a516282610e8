"""Pages: runs history, the orchestrator pane, its actions and exports. Owner-only (404)."""

from __future__ import annotations

import json
from urllib.parse import urlencode
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.middleware import HtmxDetails

from runs import exports, labels, live, services
from runs.embedding import MESSAGE_VERSION, allow_framing, host_origins
from runs.engine.queue import fairness
from runs.models import FlowRun, RunStatus
from runs.permissions import visible_runs
from runs.targets import TargetRefused, check_run
from runs.workspace import remember_open

PAGE_SIZE = 25


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("runs:workspace")


def _run(request: HttpRequest, run_id: UUID) -> FlowRun:
    """Another user's run is a 404, never a 403 that would confirm it exists."""
    return get_object_or_404(visible_runs(request.user), id=run_id)


def _usable_run(request: HttpRequest, run_id: UUID) -> FlowRun:
    """A run whose target's contents leave the server (exports): its directory must still be
    one this user may analyse (runs.targets); otherwise a 403 with the sentence."""
    run = _run(request, run_id)
    try:
        check_run(request.user, run)
    except TargetRefused as exc:
        raise PermissionDenied(str(exc)) from None
    return run


def _refused(exc: services.LaunchError) -> HttpResponse:
    """A door's refusal as its sentence: a full queue may clear (409), a target is not theirs."""
    return HttpResponse(
        str(exc), status=409 if isinstance(exc, services.PendingCapReached) else 403
    )


@login_required
def history(request: HtmxHttpRequest) -> HttpResponse:
    runs = visible_runs(request.user)
    flow, status = request.GET.get("flow", ""), request.GET.get("status", "")
    target, query = request.GET.get("target", ""), request.GET.get("q", "").strip()
    if flow:
        runs = runs.filter(flow=flow)
    unknown_status = ""
    if status in RunStatus.values:
        runs = runs.filter(status=status)
    elif status:  # a hand-edited or stale address: said, not silently ignored
        unknown_status = (
            f"There is no status “{status[:40]}”; showing runs of any status. "
            f"The statuses are: {', '.join(labels.RUN_WORDS[s] for s in RunStatus.values)}."
        )
        status = ""
    if target:
        runs = runs.filter(target__icontains=target)
    if query:
        runs = runs.filter(Q(focus__icontains=query) | Q(summary__icontains=query))
    page = Paginator(runs.order_by("-created_at"), PAGE_SIZE).get_page(request.GET.get("page"))
    flows = visible_runs(request.user).values_list("flow", flat=True).distinct().order_by("flow")
    waiting = fairness.waiting_reasons(r.id for r in page if r.status == RunStatus.PENDING)
    running = [run for run in page if run.status == RunStatus.RUNNING]
    steps = {
        run.id: run for run in runs.filter(id__in=[r.id for r in running]).prefetch_related("steps")
    }
    rows = []
    for run in page:
        held = waiting.get(run.id, "")
        shown = steps.get(run.id)
        state = labels.run_state(run, list(shown.steps.all()) if shown else None, held=held)
        rows.append({"run": run, "waiting": held, "state": state})
    context = {
        "page": page,
        "rows": rows,
        "flows": flows,
        "statuses": [(status, labels.RUN_WORDS[status]) for status in RunStatus.values],
        "filters": {"flow": flow, "status": status, "target": target, "q": query},
        "filtered": bool(flow or status or target or query),
        "unknown_status": unknown_status,
    }
    template = "runs/history.html#results" if request.htmx else "runs/history.html"
    return render(request, template, context)


@login_required
def pane(request: HttpRequest, run_id: UUID) -> HttpResponse:
    # The pane shows the report and the agents' streams, which quote the target: a run whose
    # directory this user may no longer analyse is refused like its exports.
    run = _usable_run(request, run_id)
    embed = request.GET.get("embed") == "1"
    context = {**live.page_context(run), "embed": embed}
    if embed:  # the pane's events go to these origins only (static/orchestrator/host.js)
        context["host"] = {"origins": host_origins(request), "version": MESSAGE_VERSION}
    response = render(request, "runs/pane.html", context)
    return allow_framing(response) if embed else response


@login_required
@require_POST
def cancel(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = _run(request, run_id)
    services.cancel_run(run.id)
    return HttpResponse(status=204)


@login_required
@require_POST
def retry(request: HttpRequest, run_id: UUID, key: str) -> HttpResponse:
    run = _run(request, run_id)  # another user's run: the same 404, before any step is named
    if not run.steps.filter(key=key).exists():
        return HttpResponse(f"This run has no step {key!r}.", status=404, content_type="text/plain")
    try:
        if not services.retry_step(run.id, key, user=request.user):
            return HttpResponse("This step cannot be retried now.", status=409)
    except services.LaunchError as exc:
        return _refused(exc)
    return HttpResponse(status=204, headers={"HX-Refresh": "true"})


@login_required
@require_POST
def retry_cancelled(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = _run(request, run_id)
    try:
        if not services.retry_cancelled(run.id, user=request.user):
            return HttpResponse("There is nothing cancelled to retry.", status=409)
    except services.LaunchError as exc:
        return _refused(exc)
    return HttpResponse(status=204)


@login_required
@require_POST
def rerun(request: HtmxHttpRequest, run_id: UUID) -> HttpResponse:
    """Launch the same run again and open its pane (beside this one when embedded)."""
    run = _run(request, run_id)
    if not run.is_finished:
        return HttpResponse("This run is still going; re-run it once it has finished.", status=409)
    try:
        new = services.rerun(run, request.user)
    except services.LaunchError as exc:
        return HttpResponse(f"This run cannot be launched again: {exc}", status=400)
    remember_open(request.user, new)
    if not request.htmx:  # a plain form post, without JavaScript
        return redirect(new)
    if "embed=1" not in (request.htmx.current_url or ""):
        return HttpResponse(status=204, headers={"HX-Redirect": new.get_absolute_url()})
    # An embedded pane stays as it was: it tells its host, which opens the new run in a pane
    # of its own (static/orchestrator/host.js, the `run.opened` event of docs/embedding.md).
    opened = {"run": str(new.id), "pane_url": new.get_absolute_url()}
    return HttpResponse(
        status=204, headers={"HX-Trigger": json.dumps({"orchestrator:run-opened": opened})}
    )


@login_required
def rerun_with_changes(request: HttpRequest, run_id: UUID) -> HttpResponse:
    """The workspace with the launcher open, filled in with this run's settings."""
    run = _run(request, run_id)
    return redirect(f"{reverse('runs:workspace')}?{urlencode({'from': run.id})}")


@login_required
def export(request: HttpRequest, run_id: UUID, fmt: str) -> HttpResponse:
    run = _usable_run(request, run_id)
    name = f"{run.flow}-{str(run.id)[:8]}"
    if fmt == "md":
        response = HttpResponse(
            exports.report_markdown(run), content_type="text/markdown; charset=utf-8"
        )
    elif fmt == "json":
        body = json.dumps(exports.run_as_json(run), indent=2)
        response = HttpResponse(body, content_type="application/json")
    else:
        raise Http404("unknown format")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


@login_required
@require_POST
def send_to_chat(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = _usable_run(request, run_id)
    if not run.report:
        return HttpResponse("There is no report yet.", status=409)
    return HttpResponse(exports.send_to_chat(run, request.user))
