"""Pages. The full pane arrives with the web issue; these serve a run's report meanwhile."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from runs.models import FlowRun


def home(request: HttpRequest) -> HttpResponse:
    return redirect("admin:runs_flowrun_changelist")


@login_required
def pane(request: HttpRequest, run_id: UUID) -> HttpResponse:
    run = get_object_or_404(visible_runs(request), id=run_id)
    return render(request, "runs/pane.html", {"run": run, "steps": run.steps.all()})


def visible_runs(request: HttpRequest) -> QuerySet[FlowRun]:
    """Owner-only: another user's run is a 404, never a 403 that confirms it exists."""
    runs = FlowRun.objects.all()
    if request.user.is_superuser:
        return runs
    return runs.filter(owner_id=request.user.pk)
