"""Who may analyse what: the one rule every door asks (launch form, slash command, launch_flow,
retries, the checked lines, the exports).

A user may use a directory under
- their own `{user}` roots of ORCHESTRATOR_ALLOWED_ROOTS (`/srv/projects/{user}`),
- a TargetGrant to them or to one of their groups (made by a superuser in the admin),
- ORCHESTRATOR_SHARED_ROOTS (stated by the operator: every signed-in user may use these).
Superusers, and the CLI without --user (the operator), may use every allowed root. So a
single-user install works with no setting: its one person is the superuser or the CLI, and
nobody else reaches anything until a grant, a `{user}` root or a shared root says so.

Everything is checked on the real path (links followed) and only inside the allowed roots,
which stay the outer fence. A refusal is one sentence whatever the reason (missing, not
theirs, outside the roots, unreadable), so it never tells whether a path exists.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.engine.target import roots
from runs.models import TargetGrant

REFUSAL = (
    "You cannot analyse that directory: it is not one you were given, or it does not exist. "
    "Ask an administrator for access to a project."
)
RUN_REFUSAL = "You no longer have access to the project directory of this run."


class TargetRefused(ValueError):
    """A door refused a target; the message is shown to the person as is."""


def usable_roots(user: Any) -> list[Path] | None:
    """The directories this user may use, or None for "every allowed root" (the operator)."""
    if user is None or getattr(user, "is_superuser", False):
        return None
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return []
    granted = TargetGrant.objects.filter(user_id=user.pk) | TargetGrant.objects.filter(
        group__in=user.groups.all()
    )
    return [
        *roots.user_roots(user.get_username()),
        *(Path(d) for d in granted.values_list("directory", flat=True)),
        *(Path(d) for d in settings.ORCHESTRATOR_SHARED_ROOTS),
    ]


def may_use(user: Any, path: str | os.PathLike[str]) -> bool:
    """Whether this user may analyse the real path (the caller has followed links)."""
    if not roots.in_fence(path):
        return False
    mine = usable_roots(user)
    return mine is None or roots.under(path, mine)


def resolve_target(raw: Any, user: Any) -> Path:
    """The target as the real directory a user may analyse, or TargetRefused (one sentence)."""
    if not isinstance(raw, str) or not raw.strip():
        raise TargetRefused("A target directory is required.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise TargetRefused("The target path contains a control character (such as a NUL).")
    # The rule is asked before anything about the path itself is: its answer for a path
    # outside what the user may use must not depend on whether that path exists.
    try:
        real = Path(os.path.realpath(Path(raw.strip()).expanduser()))
    except (OSError, ValueError, RuntimeError):
        raise TargetRefused(REFUSAL) from None
    if not may_use(user, real):
        raise TargetRefused(REFUSAL)
    try:
        info = os.stat(real)
    except OSError:
        raise TargetRefused(REFUSAL) from None
    if not stat.S_ISDIR(info.st_mode):
        raise TargetRefused("That path is not a directory: give the project's directory.")
    if not os.access(real, os.R_OK | os.X_OK):
        raise TargetRefused(
            "The server is not allowed to read that directory (a permission error); "
            "ask an administrator to let the service account read it."
        )
    return real


def default_directory(user: Any) -> str:
    """The project directory a new pane starts on: the first this user may use, if any."""
    mine = usable_roots(user)
    first = roots.plain_roots() if mine is None else mine
    return str(first[0]) if first else ""


def check_run(user: Any, run: Any) -> None:
    """Refuse a door on an existing run whose directory this user may not use (any more)."""
    if not may_use(user, str(getattr(run, "target_real_path", "") or run.target)):
        raise TargetRefused(RUN_REFUSAL)


def check_grant_directory(directory: str) -> str:
    """A grant's directory as stored: absolute, real, inside the allowed roots, an existing
    directory. (Only a superuser asks, so saying that a path does not exist reveals nothing.)"""
    if not directory or "\x00" in directory or not os.path.isabs(directory):
        raise TargetRefused("Give an absolute directory path.")
    real = os.path.realpath(directory)
    if not roots.in_fence(real):
        raise TargetRefused(
            "That directory is outside ORCHESTRATOR_ALLOWED_ROOTS, so a grant there would give "
            "nothing; widen the setting first."
        )
    if not os.path.isdir(real):
        raise TargetRefused(
            "That directory does not exist on this server (or is not a directory); give the "
            "project's directory."
        )
    return real
