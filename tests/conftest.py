"""Fixtures that build on each other: users -> a target project -> the scripted model -> runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import finish_step, write_project

# The real-server tier's facts, gathered from every xdist worker and printed at the end.
pytest_plugins = ["tests.realserver.facts"]


@pytest.fixture
def target_dir(tmp_path: Path) -> Path:
    """A small project to analyse, with code worth flagging."""
    return write_project(tmp_path)


@pytest.fixture(autouse=True)
def _allow_tmp_targets(settings: Any, tmp_path: Path) -> None:
    """Every test's own directory is the allowed root, shared by its users (a team that
    shares everything); tests of who may use what (tests/test_targets.py) narrow it."""
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp_path.resolve()]
    settings.ORCHESTRATOR_SHARED_ROOTS = [tmp_path.resolve()]


@pytest.fixture
def scripted_model(settings: Any) -> Iterator[Any]:
    """The project's scripted model server on a free port; runs use it over real HTTP."""
    from runs.demo.server import ScriptedModelServer

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
def charlie(django_user_model: Any) -> Any:
    """A third user: one more owner in the model's line."""
    return django_user_model.objects.create_user("charlie", password="charlie-pass-123")


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


@pytest.fixture
def run_with_a_failed_agent(alice: Any, target_dir: Path) -> Any:
    """A code review whose Correctness agent failed; the others finished and the validator
    passed, so the report is written."""
    from runs.engine.queue import scheduler
    from runs.services import launch_run

    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    for step_id in scheduler.claim_steps("w", 10, run_id=run.id):
        failed = run.steps.get(id=step_id).key == "correctness"
        finish_step(step_id, "w", succeeded=not failed, output="found", error="the model went away")
    for output in ("- **Shell** (codebase) `app/views.py:6`", "Summary: ok.\nConfidence: high"):
        [step_id] = scheduler.claim_steps("w", 10, run_id=run.id)
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


@pytest.fixture
def alice_token(alice: Any) -> str:
    """A live API token of alice's (the raw value, as she was shown it once)."""
    from runs.api_tokens import create_token

    return create_token(alice, "tests")[1]


@pytest.fixture
def bob_token(bob: Any) -> str:
    from runs.api_tokens import create_token

    return create_token(bob, "tests")[1]


@pytest.fixture
def served_site(scripted_model: Any, tmp_path: Path) -> Iterator[str]:
    """`manage.py serve` (web, MCP and the engine in one process) on a free loopback port,
    running runs on the scripted model; yields its URL. Needs django_db(transaction=True)."""
    import signal
    import socket
    import subprocess
    import time

    from devtools.testing import free_port, manage_env, start_manage

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = manage_env(
        ORCHESTRATOR_MODEL="demo/scripted",
        ORCHESTRATOR_BASE_URL=scripted_model.url,
        ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path.resolve()),
        ORCHESTRATOR_SHARED_ROOTS=str(tmp_path.resolve()),
        ORCHESTRATOR_PUBLIC_URL=url,
    )
    log = tmp_path / "serve.log"
    process = start_manage("serve", "--port", str(port), env=env, log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def _fresh_socket_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no pane sockets counted and no connect rate spent: the counts
    live as long as the process (runs/socket_limits.py), and tests connect far more often
    than a person would."""
    from runs import consumers
    from runs.socket_limits import OpenSockets

    monkeypatch.setattr(consumers, "OPEN_SOCKETS", OpenSockets())


@pytest.fixture
def open_pane_socket() -> Any:
    """`await open_pane_socket(user, run, origin=..., host=...)`: a WebsocketCommunicator on
    the run's socket with the user's session cookie, and whether the handshake was accepted.
    Origin None sends no Origin header. The caller always disconnects it."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from orchestrator_site.asgi import application

    def cookie_for(user: Any) -> str:
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"

    async def open_socket(
        user: Any,
        run: Any,
        *,
        origin: str | None = "http://127.0.0.1:8000",
        host: str = "127.0.0.1:8000",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[Any, bool]:
        cookie = await database_sync_to_async(cookie_for)(user)
        headers = [(b"host", host.encode()), (b"cookie", cookie.encode()), *(extra or [])]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        communicator = WebsocketCommunicator(application, f"/ws/runs/{run.id}/", headers=headers)
        connected, _ = await communicator.connect()
        return communicator, connected

    return open_socket


# --- Helpers many test modules share, as fixtures (no test module imports another) -------

# A validator's verdict that keeps the synthesizer's confidence high.
HIGH_VERDICT = "Summary: Two real problems.\nConfidence: high\nReasons: all findings are cited."


@pytest.fixture
def client_for() -> Any:
    """`client_for(user)`: a Django test client logged in as that user."""
    from django.test import Client

    def login(user: Any) -> Any:
        client = Client()
        client.force_login(user)
        return client

    return login


@pytest.fixture
def connect(open_pane_socket: Any) -> Any:
    """`await connect(user, run)`: the run's pane socket from the site's own origin, and
    whether the handshake was accepted. The caller always disconnects it."""

    async def open_socket(user: Any, run: Any) -> tuple[Any, bool]:
        communicator, connected = await open_pane_socket(user, run)
        return communicator, bool(connected)

    return open_socket


@pytest.fixture
def event_ids() -> Any:
    """`event_ids(html)`: the ids of the stored events a pane fragment shows, in order."""
    import re

    return lambda html: [int(i) for i in re.findall(r'data-id="(\d+)"', html)]


@pytest.fixture
def run_to_end() -> Any:
    """`run_to_end(run)`: the engine runs it in this process until it ends; the run, reread.
    The timeout only bounds the wait."""
    import asyncio

    from runs.engine.worker import Engine

    def go(run: Any, timeout: float = 90) -> Any:
        async def drive() -> None:
            await asyncio.wait_for(Engine(run_id=run.id).run(), timeout)

        asyncio.run(drive())
        run.refresh_from_db()
        return run

    return go


@pytest.fixture
def finish_run() -> Any:
    """`finish_run(run, report=..., verdict=..., fail=..., outputs=...)`: the scheduler
    driven by hand: specialists (`fail` names one that fails), then the synthesizer's
    report, then the validator's verdict (high confidence unless given)."""
    from runs.engine.queue import scheduler
    from runs.models import FlowStep

    def finish(
        run: Any,
        *,
        report: str,
        verdict: str = HIGH_VERDICT,
        fail: str | None = None,
        outputs: dict[str, str] | None = None,
    ) -> Any:
        for step_id in scheduler.claim_steps("w", 10, run_id=run.id):
            key = FlowStep.objects.get(id=step_id).key
            if key == fail:
                finish_step(step_id, "w", succeeded=False, error="model server failed")
            else:
                output = (outputs or {}).get(key, f"{key} findings")
                finish_step(step_id, "w", succeeded=True, output=output)
        [synth] = scheduler.claim_steps("w", 10, run_id=run.id)
        finish_step(synth, "w", succeeded=True, output=report)
        [gate] = scheduler.claim_steps("w", 10, run_id=run.id)
        finish_step(gate, "w", succeeded=True, output=verdict)
        run.refresh_from_db()
        return run

    return finish


@pytest.fixture
def cited_report() -> str:
    """A synthesizer's report with three findings, each citing real lines of the shop."""
    return (
        "## Findings\n"
        "- **Shell injection** (codebase, high) `app/views.py:6` — "
        "`return subprocess.run(cmd, shell=True)`\n"
        "- **Hard-coded password** (codebase, medium) `app/settings.py:3` — "
        '`password = "[redacted]"`\n'
        "- **Unvalidated command** (codebase, high) `app/views.py:5` — "
        "`# TODO: validate the command`\n"
    )


@pytest.fixture
def run_with(finish_run: Any, cited_report: str) -> Any:
    """`run_with(target, owner, report=cited_report)`: a finished code review of that
    owner's, its report's citations checked."""
    from runs.services import launch_run

    def finished(target: Path, owner: Any, report: str = cited_report) -> Any:
        run = launch_run(flow="code-review", target=str(target), owner=owner)
        return finish_run(run, report=report)

    return finished


@pytest.fixture
def manage() -> Any:
    """`manage(*args, env=...)`: `manage.py` run to its end; its exit code and output."""
    import subprocess
    import sys

    from devtools.testing import ROOT

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture
def stop() -> Any:
    """`stop(process)`: SIGTERM, then SIGKILL if it has not gone within ten seconds."""
    import signal
    import subprocess

    def terminate(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    return terminate


@pytest.fixture
def worker_env() -> Any:
    """`worker_env(model_url, **extra)`: the environment of a worker process on the
    scripted model at that URL, with a short lease."""
    import os

    from devtools.testing import manage_env

    def env(model_url: str, **extra: str) -> dict[str, str]:
        return manage_env(
            **{
                "ORCHESTRATOR_MODEL": "demo/scripted",
                "ORCHESTRATOR_BASE_URL": model_url,
                "ORCHESTRATOR_LEASE_SECONDS": "2",
                "ORCHESTRATOR_ALLOWED_ROOTS": os.environ.get("ORCHESTRATOR_ALLOWED_ROOTS", "/"),
                **extra,
            }
        )

    return env


@pytest.fixture
def redis_url() -> str | None:
    """The Redis the tests may use: TEST_REDIS_URL (which must answer: CI sets it, so a
    Redis that is down fails the test with a sentence), else one on 127.0.0.1:6379, else None.
    A test that runs without one says so itself."""
    import os
    import socket
    from urllib.parse import urlsplit

    url = os.environ.get("TEST_REDIS_URL")
    address = ("127.0.0.1", 6379)
    if url:
        parts = urlsplit(url)
        address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        if url:
            pytest.fail(f"TEST_REDIS_URL is {url}, but no Redis answers there ({exc})")
        return None
    return url or "redis://127.0.0.1:6379/0"


@pytest.fixture
def server() -> Iterator[Any]:
    """A bare scripted model server (the backend's tests talk to it directly)."""
    from runs.demo.server import ScriptedModelServer

    with ScriptedModelServer() as scripted:
        yield scripted


@pytest.fixture
def canned() -> Iterator[Any]:
    """Start canned-SSE servers (tests/canned_sse.py): the same answer to every POST."""
    from tests.canned_sse import Canned

    started: list[Canned] = []

    def start(body: bytes, status: int = 200) -> Canned:
        started.append(Canned(body, status))
        return started[-1]

    yield start
    for item in started:
        item.httpd.shutdown()
        item.httpd.server_close()
