"""Commands as a person would type them in this checkout, for banners and pages."""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings


def manage_command(*args: str) -> str:
    """`<this interpreter> manage.py ARGS`: the interpreter that has the dependencies (a bare
    `python` outside the virtualenv does not), relative to the project when it is inside."""
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path(settings.BASE_DIR)))
    except ValueError:
        shown = str(python)
    return " ".join([shown, "manage.py", *args])
