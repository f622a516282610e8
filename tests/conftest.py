"""Fixtures that build on each other: users -> a target project -> the scripted model -> runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

SOURCE_FILES = {
    "app/__init__.py": "",
    "app/settings.py": 'DEBUG = True\nSECRET = "not-a-real-secret"\npassword = "hunter2"\n',
    "app/views.py": (
        "import subprocess\n\n\n"
        "def run(cmd):\n"
        "    # TODO: validate the command before running it\n"
        "    return subprocess.run(cmd, shell=True)\n\n\n"
        "def total(items):\n"
        "    result = 0\n"
        "    for item in items:\n"
        "        result += item.price\n"
        "    return result\n"
    ),
    "tests/test_views.py": "from app.views import total\n\n\ndef test_total():\n    assert total([]) == 0\n",
    "README.md": "# Shop\n\nA tiny shop used as a review target.\n",
}


def write_project(base: Path) -> Path:
    """Write the small shop project under base (the tests and the benchmarks use it)."""
    root = base / "shop"
    for name, text in SOURCE_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


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
    from runs.fakemodel.server import ScriptedModelServer

    with ScriptedModelServer() as server:
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = server.url
        yield server


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password="alice-pass-123")


@pytest.fixture
def bob(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("bob", password="bob-pass-123")


@pytest.fixture
def finished_run(alice: Any, target_dir: Path) -> Any:
    """A finished code review with a few stored events on the security agent."""
    from runs import scheduler
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
        scheduler.finish_step(step_id, "w", succeeded=True, output=f"{step.key} found")
    for key in ("synthesis", "validation"):
        [step_id] = scheduler.claim_steps("w", 10, run_id=run.id)
        output = (
            "- **Shell** (codebase) `app/views.py:6`"
            if key == "synthesis"
            else "Summary: One <img src=x onerror=alert(1)> issue.\nConfidence: high\nReasons: r"
        )
        scheduler.finish_step(step_id, "w", succeeded=True, output=output)
    run.refresh_from_db()
    return run


def database_url() -> str:
    """The test database as a URL, for processes the tests start themselves."""
    from django.db import connection

    conf = connection.settings_dict
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    host = conf["HOST"] or ""
    if host.startswith("/"):
        return f"postgresql://{auth}@/{conf['NAME']}?host={host}"
    port = f":{conf['PORT']}" if conf["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{conf['NAME']}"


def manage_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "ORCHESTRATOR_SWEEP_SECONDS": "0.5",
            **extra,
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_manage(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real `manage.py` process, output to a log file the test can show on failure."""
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


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
