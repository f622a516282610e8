"""Where targets may lie at all: ORCHESTRATOR_ALLOWED_ROOTS, whose entries may carry a
`{user}` part (`/srv/projects/{user}`: each user's own directory).

This module only reads the setting; who may use which part of it is runs.targets' rule.
The engine asks `in_fence` again at every use of a target, so narrowing the setting stops
runs that were launched under the old one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

USER_PART = "{user}"


def _entries() -> list[Path]:
    from django.conf import settings  # here, so importing this needs no configured Django

    return [Path(entry) for entry in settings.ORCHESTRATOR_ALLOWED_ROOTS]


def plain_roots() -> list[Path]:
    """The entries without a `{user}` part: the operator's (superusers and the CLI)."""
    return [entry for entry in _entries() if USER_PART not in entry.parts]


def user_roots(username: str) -> list[Path]:
    """The `{user}` entries with this name put in. Not followed: a per-user directory that is
    a link to elsewhere is outside the fence like any other link out.

    A name that is not one plain path component ("..", ".", a slash, a NUL) gets none: it
    would otherwise climb out of the directory the entry names."""
    if not is_component(username):
        return []
    return [
        Path(*(username if part == USER_PART else part for part in entry.parts))
        for entry in _entries()
        if USER_PART in entry.parts
    ]


def in_fence(real: str | os.PathLike[str]) -> bool:
    """Whether a real path lies under any entry: a plain root, or a `{user}` root of anyone."""
    parts = Path(real).parts
    for entry in _entries():
        pattern = entry.parts
        if len(parts) < len(pattern):
            continue
        if all(
            (p == USER_PART and is_component(q)) or p == q
            for p, q in zip(pattern, parts, strict=False)
        ):
            return True
    return False


def under(real: str | os.PathLike[str], roots: list[Path]) -> bool:
    path = Path(real)
    return any(path == root or path.is_relative_to(root) for root in roots)


def is_component(name: Any) -> bool:
    return (
        isinstance(name, str)
        and name not in {"", ".", ".."}
        and "/" not in name
        and "\x00" not in name
        and os.sep not in name
    )
