"""Who may see a run: its owner; superusers see all (including runs launched from the CLI)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from runs.models import FlowRun


def visible_runs(user: Any) -> QuerySet[FlowRun]:
    if user is None or not user.is_authenticated:
        return FlowRun.objects.none()
    if user.is_superuser:
        return FlowRun.objects.all()
    return FlowRun.objects.filter(owner_id=user.pk)


def can_see(user: Any, run: FlowRun) -> bool:
    return visible_runs(user).filter(id=run.id).exists()


def token_runs(user: Any) -> QuerySet[FlowRun]:
    """What an API or MCP token sees: its owner's own runs, superuser or not (a token handed
    to a host app acts for one person, never as the operator)."""
    if user is None or not user.is_authenticated:
        return FlowRun.objects.none()
    return FlowRun.objects.filter(owner_id=user.pk)
