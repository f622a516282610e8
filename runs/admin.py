"""Run inspection in the Django admin: runs with their steps, sessions and events read-only.

Nothing here is edited by hand (the engine writes every row), so the pages are view-only: no
Save button. A run's page shows its steps first, then the run, with the raw report data last.

Staff see in the admin exactly what the pane would show them (runs.permissions): their own
runs and what hangs off them; superusers see everything. Lists, change pages, history pages
and actions all go through get_queryset, so a staff user cannot reach another user's run by
its id or act on it.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from runs import api_tokens, services
from runs.labels import RUN_WORDS, run_state
from runs.models import (
    AgentEvent,
    AgentSession,
    ApiToken,
    FlowRun,
    FlowStep,
    StepStatus,
    TargetGrant,
)
from runs.permissions import visible_runs
from runs.targets import TargetRefused, check_grant_directory

GRANT_TO_ONE = "A grant is to one user or one group."


class TargetGrantForm(forms.ModelForm):
    class Meta:
        model = TargetGrant
        fields = ["directory", "user", "group"]

    def clean_directory(self) -> str:
        try:
            return check_grant_directory(self.cleaned_data.get("directory") or "")
        except TargetRefused as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        user, group = data.get("user"), data.get("group")
        if bool(user) == bool(group):
            raise forms.ValidationError(GRANT_TO_ONE)
        # A second identical grant would make deleting one of them take nothing back.
        same = TargetGrant.objects.filter(directory=data.get("directory"), user=user, group=group)
        if data.get("directory") and same.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(
                f"{data['directory']} is already granted to {user or group}; "
                "there is nothing to add."
            )
        return data

    def validate_constraints(self) -> None:
        """The database's own check says the same as clean() in its own words (the
        constraint's name): the person sees the sentence, once."""
        try:
            # The same exclusions Django's own validate_constraints uses (not in the stubs).
            exclude = self._get_validation_exclusions()  # type: ignore[attr-defined]
            self.instance.validate_constraints(exclude=exclude)
        except ValidationError:
            if GRANT_TO_ONE not in self.non_field_errors():
                self.add_error(None, GRANT_TO_ONE)


class VisibleRunsMixin:
    """Rows of the runs this user may see; `run_path` leads from the model to its run."""

    run_path = ""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if getattr(request.user, "is_superuser", False):
            return queryset
        lookup = f"{self.run_path}__in" if self.run_path else "pk__in"
        return queryset.filter(**{lookup: visible_runs(request.user).values("pk")})


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the engine owns these rows; deleting one under a running step breaks it


class FlowStepInline(VisibleRunsMixin, ReadOnlyMixin, admin.TabularInline):
    model = FlowStep
    run_path = "run"
    fields = (
        "key",
        "role",
        "status",
        "attempt",
        "started_at",
        "finished_at",
        "tokens_in",
        "tokens_out",
        "tool_calls",
        "error",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


class RunStatusFilter(admin.SimpleListFilter):
    """The status filter in the words every other view uses (runs.labels), not the model's
    own choice labels."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(RUN_WORDS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(status=value) if value in RUN_WORDS else queryset


@admin.register(FlowRun)
class FlowRunAdmin(VisibleRunsMixin, admin.ModelAdmin):
    list_display = ("id", "flow", "band", "fast", "state", "confidence", "owner", "created_at")
    list_filter = (RunStatusFilter, "flow", "band", "origin")
    search_fields = ("focus", "target", "id")

    @admin.display(description="status", ordering="status")
    def state(self, run: FlowRun) -> str:
        """The run's status in the words every other view uses (runs.labels)."""
        return run_state(run).text

    # templates/admin/runs/flowrun/change_form.html puts the steps first.
    fieldsets = [
        (None, {"fields": [("flow", "band", "fast", "status"), "pane_link", "target", "focus"]}),
        ("Outcome", {"fields": ["summary", "confidence", "error", "report"]}),
        (
            "When and how",
            {
                "fields": [
                    ("created_at", "started_at", "finished_at"),
                    ("tokens_in", "tokens_out"),
                    ("model", "origin", "host_pane"),
                    "owner",
                    "id",
                ]
            },
        ),
        ("Report data (JSON)", {"classes": ["collapse"], "fields": ["report_data_json"]}),
    ]
    readonly_fields = [
        *(f.name for f in FlowRun._meta.fields if f.name != "report_data"),
        "pane_link",
        "report_data_json",
    ]
    inlines = [FlowStepInline]
    actions = ["cancel_runs", "retry_failed_steps"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # view-only; cancel and retry are actions, not edits

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A deleted run under a running engine leaves its steps' writes pointing at nothing;
        # cancel it instead (its history stays).
        return False

    @admin.display(description="pane")
    def pane_link(self, run: FlowRun) -> str:
        return format_html('<a href="{}">open the run\'s pane</a>', run.get_absolute_url())

    @admin.display(description="report data")
    def report_data_json(self, run: FlowRun) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap">{}</pre>', json.dumps(run.report_data, indent=2)
        )

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[FlowRun]) -> None:
        done = sum(services.cancel_run(run.id) for run in queryset)
        self.message_user(request, f"Cancelled {done} run(s).", messages.SUCCESS)

    @admin.action(description="Retry failed steps of selected runs")
    def retry_failed_steps(self, request: HttpRequest, queryset: QuerySet[FlowRun]) -> None:
        retried, refusals = 0, set()
        for run in queryset:
            failed = run.steps.filter(status=StepStatus.FAILED).order_by("position").first()
            try:
                if failed is not None and services.retry_step(
                    run.id, failed.key, user=request.user
                ):
                    retried += 1
            except services.LaunchError as exc:
                refusals.add(str(exc))
        self.message_user(request, f"Retrying {retried} run(s).", messages.SUCCESS)
        for refusal in sorted(refusals):
            self.message_user(request, refusal, messages.WARNING)


@admin.register(FlowStep)
class FlowStepAdmin(VisibleRunsMixin, ReadOnlyMixin, admin.ModelAdmin):
    run_path = "run"
    list_display = ("key", "run", "status", "attempt", "tokens_out", "tool_calls")
    list_filter = ("status", "kind")
    readonly_fields = [f.name for f in FlowStep._meta.fields]


@admin.register(AgentSession)
class AgentSessionAdmin(VisibleRunsMixin, ReadOnlyMixin, admin.ModelAdmin):
    run_path = "step__run"
    list_display = ("step", "attempt", "worker", "turns_completed", "resumed_from_turn")
    readonly_fields = [f.name for f in AgentSession._meta.fields]


@admin.register(AgentEvent)
class AgentEventAdmin(VisibleRunsMixin, ReadOnlyMixin, admin.ModelAdmin):
    run_path = "step__run"
    list_display = ("session", "seq", "kind", "created_at")
    list_filter = ("kind",)
    readonly_fields = [f.name for f in AgentEvent._meta.fields]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made here (shown once, in the message after saving) and revoked by action;
    the secret itself is never stored, so nothing here can show it again."""

    list_display = ("prefix", "owner", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    fields = ("owner", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke_tokens"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        queryset = super().get_queryset(request)
        if getattr(request.user, "is_superuser", False):
            return queryset
        return queryset.filter(owner_id=request.user.pk)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A token's owner and name are chosen once; afterwards it can only be revoked.
        return ("owner", "name", *self.readonly_fields) if obj else self.readonly_fields

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # Staff make tokens for themselves; only a superuser may make one for someone else.
        if db_field.name == "owner" and not getattr(request.user, "is_superuser", False):
            kwargs["queryset"] = db_field.related_model.objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            return
        token, raw = api_tokens.create_token(obj.owner, obj.name)
        obj.pk, obj.prefix, obj.digest = token.pk, token.prefix, token.digest
        obj.created_at = token.created_at
        self.message_user(
            request,
            f"New token for {token.owner}: {raw} (shown this once; it is stored only as a hash)",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{revoked} token(s) revoked.")


@admin.register(TargetGrant)
class TargetGrantAdmin(admin.ModelAdmin):
    """Who may analyse which directory (runs.targets). Only superusers see or change grants:
    a staff user who could grant would grant themselves anything."""

    list_display = ("directory", "user", "group", "created_at")
    list_filter = ("group",)
    search_fields = ("directory", "user__username", "group__name")
    fields = ("directory", "user", "group")
    form = TargetGrantForm

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a grant is added or deleted, never edited into another one

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))
