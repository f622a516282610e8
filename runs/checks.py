"""Settings checked when any process starts: every `manage.py` command (`check`, `serve`,
`runworker`, `launch_flow`, ...) and the ASGI application refuse to start with the variable's
name instead of failing at the first launch.

Most variables are checked as settings.py reads them (orchestrator_site/env.py); these are the
ones whose rule lives with the code that uses them. Both stop the process the same way: an
ImproperlyConfigured, which manage.py says as "Configuration error: ..." (exit status 2).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from runs.engine.agent.modelconfig import configuration_problems
from runs.engine.target import roots


def settings_problems() -> list[str]:
    """Every mistake in these settings, one sentence each naming its variable."""
    return [*configuration_problems(), *shared_root_problems()]


def shared_root_problems() -> list[str]:
    """Each shared root lies inside the allowed roots (runs/targets.py only ever asks both)."""
    return [
        f"ORCHESTRATOR_SHARED_ROOTS lists {str(path)!r}, which is not inside "
        "ORCHESTRATOR_ALLOWED_ROOTS"
        for path in settings.ORCHESTRATOR_SHARED_ROOTS
        if not roots.in_fence(path)
    ]


def refuse_bad_settings() -> None:
    """Stop the process starting, one line per bad setting."""
    problems = settings_problems()
    if problems:
        raise ImproperlyConfigured("\n".join(problems))
