"""Fixtures that build on each other: users -> a target project -> the scripted model -> runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import finish_step, write_project


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    """A small project to analyse, with code worth flagging."""
    return write_project(tmp_path)


@pytest.fixture(autouse=True)
def _allow_tmp_targets(settings: Any, tmp_path: Path) -> None:
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp_path.resolve()]


@pytest.fixture
def scripted_model(settings: Any) -> Iterator[Any]:
    """The project's scripted model server on a free port; runs use it over real HTTP."""
    from devtools.fakemodel.server import ScriptedModelServer

    with ScriptedModelServer() as server:
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = server.url
        yield server


@pytest.fixture
def secret_corpus(tmp_path: Path) -> Any:
    """A git repository with a secret in every form the rule knows (devtools.secret_corpus)."""
    from devtools.secret_corpus import commit_corpus, write_secret_corpus

    corpus = write_secret_corpus(tmp_path)
    commit_corpus(corpus)
    return corpus


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="alice-pass-123")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob", password="bob-pass-123")


@pytest.fixture
def finished_run(alice: Any, target_dir: Path) -> Any:
    """A finished code review with a few stored events on the security agent."""
    from runs.engine.queue import scheduler
    from runs.models import AgentEvent, AgentSession, FlowStep
    from runs.services import launch_run

    run = launch_run(flow="code-review", target=str(target_dir), owner=alice, focus="<b>auth</b>")
    for step_id in scheduler.claim_steps("w", 10, run_id=run.id):
        step = FlowStep.objects.get(id=step_id)
        session = AgentSession.objects.create(
            step=step, attempt=1, worker="w", backend="t", model="m"
        )
        AgentEvent.objects.bulk_create(
            AgentEvent(
                session=session,
                step=step,
                seq=i + 1,
                kind="text",
                payload={"text": f"{step.key}-{i} <script>alert(1)</script>"},
            )
            for i in range(3)
        )
        finish_step(step_id, "w", succeeded=True, output=f"{step.key} found")
    for key in ("synthesis", "validation"):
        [step_id] = scheduler.claim_steps("w", 10, run_id=run.id)
        output = (
            "- **Shell** (codebase) `app/views.py:6`"
            if key == "synthesis"
            else "Summary: One <img src=x onerror=alert(1)> issue.\nConfidence: high\nReasons: r"
        )
        finish_step(step_id, "w", succeeded=True, output=output)
    run.refresh_from_db()
    return run


@pytest.fixture(scope="session", autouse=True)
def _close_async_connections(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Consumers talk to the database on asgiref's shared thread, whose persistent connection
    would otherwise keep the test database busy at teardown.

    The browser tests also leave one connection of this process behind that no thread can
    reach any more (their ORM calls run beside Playwright's event loop, in a context of
    their own); its session is ended here so the test database can be dropped cleanly."""
    yield
    import asyncio

    from channels.db import database_sync_to_async
    from django.db import connection, connections

    with django_db_blocker.unblock():
        asyncio.run(database_sync_to_async(connections.close_all)())
        with connection.cursor() as cursor:
            # Every process the tests started has stopped by now: what is left is a leak.
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connection.close()
