from __future__ import annotations

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Orchestrator runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Checked when any process starts (manage.py check, serve, runworker, launch_flow).
        from django.core import checks

        from runs import checks as settings_checks

        checks.register(settings_checks.check_model_settings)
        checks.register(settings_checks.check_shared_roots)
