from __future__ import annotations

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Orchestrator runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Checked when any process starts, as settings.py checks the rest: one refusal, in
        # one format, for every bad setting (not a system check's "?: (id)" line after it).
        from runs.checks import refuse_bad_settings

        refuse_bad_settings()
