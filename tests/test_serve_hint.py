"""`manage.py serve` tells how to create a login only while there is none."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest

from runs.management.commands.serve import Command


def hint(url: str = "http://127.0.0.1:8000/") -> str:
    out = StringIO()
    Command(stdout=out).first_time_hint(url)
    return out.getvalue()


@pytest.mark.django_db
def test_the_first_time_hint_shows_while_no_user_exists():
    said = hint()
    assert "First time? Create your login" in said
    assert "http://127.0.0.1:8000/workspace/" in said


@pytest.mark.django_db
def test_the_first_time_hint_is_not_shown_once_a_user_exists(alice: Any):
    assert hint() == ""
