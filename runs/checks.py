"""Settings checked when any process starts: `manage.py check`, `serve`, `runworker` and
`launch_flow` refuse to start with the variable's name instead of failing at the first launch.

Most variables are checked as settings.py reads them (orchestrator_site/env.py); these are the
ones whose rule lives with the code that uses them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from runs.engine.agent.modelconfig import configuration_problems
from runs.engine.target import roots


def check_model_settings(**_: Any) -> list[checks.CheckMessage]:
    """The model, its provider, the base URL and the slots."""
    return [checks.Error(problem, id="orchestrator.E001") for problem in configuration_problems()]


def check_shared_roots(**_: Any) -> list[checks.CheckMessage]:
    """Each shared root lies inside the allowed roots (runs/targets.py only ever asks both)."""
    return [
        checks.Error(
            f"ORCHESTRATOR_SHARED_ROOTS lists {str(path)!r}, which is not inside "
            "ORCHESTRATOR_ALLOWED_ROOTS",
            id="orchestrator.E002",
        )
        for path in settings.ORCHESTRATOR_SHARED_ROOTS
        if not roots.in_fence(path)
    ]
