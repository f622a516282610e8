"""Fixtures for the blind endpoint tests: real llama-servers behind counting proxies, a hostile
model server, `manage.py launch_flow --wait` as a real process on the test database, and
readers of what a person sees afterwards (the API's run detail, the pane, the report, the
stored text).

Written from the promise (README and the task's brief), not from the code that keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import manage_env, write_project

from .counting_proxy import CountingProxy
from .harness import Launched, finish_launch, start_launch, strict_json

# --- the real llama.cpp server -------------------------------------------------------------


@pytest.fixture(scope="session")
def llama_artefacts() -> tuple[Path, Path]:
    """The built `llama-server` and the tiny random model (built once into the cache)."""
    from devtools.llamacpp.build import ensure_server
    from devtools.llamacpp.model import ensure_model

    return ensure_server(), ensure_model()


@pytest.fixture
def llama(llama_artefacts: tuple[Path, Path], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`llama(slots=N)`: a started real llama-server with N slots; all stopped at the end."""
    from devtools.llamacpp.model import TRAINED_CONTEXT
    from devtools.llamacpp.server import LlamaServer
    from devtools.testing import free_port

    binary, model = llama_artefacts
    started: list[Any] = []

    def start(*, slots: int = 1, running: bool = True) -> Any:
        server = LlamaServer(
            binary=binary,
            model=model,
            port=free_port(),
            log_path=tmp_path / f"llama-{len(started) + 1}.log",
            slots=slots,
            # Every slot gets the model's whole trained context: the agents' prompts are long.
            context=TRAINED_CONTEXT * slots,
        )
        started.append(server)
        if running:
            server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def proxies() -> Iterator[Callable[..., CountingProxy]]:
    """`proxies(server, first_byte_delay=0)`: a started counting proxy in front of it, which
    caps every answer at 24 tokens (the random model's long gibberish only slows a run down,
    and now and then breaks the server's tool-call parser, which the run then retries)."""
    made: list[CountingProxy] = []

    def make(server: Any, *, first_byte_delay: float = 0.0) -> CountingProxy:
        proxy = CountingProxy(server.port, first_byte_delay=first_byte_delay, max_tokens=24)
        proxy.start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


# --- launching through the CLI -------------------------------------------------------------


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The small project to review, under the test's allowed root."""
    return write_project(tmp_path)


@pytest.fixture
def cli_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """`cli_env(**settings)`: a manage.py environment on the test database, targets allowed
    under the test's directory (alice's too), retries short enough for a test."""

    def env(**settings: str) -> dict[str, str]:
        root = str(tmp_path.resolve())
        values = {
            "ORCHESTRATOR_ALLOWED_ROOTS": root,
            "ORCHESTRATOR_SHARED_ROOTS": root,
            "ORCHESTRATOR_RETRY_SECONDS": "60",
            "ORCHESTRATOR_LEASE_SECONDS": "3",
            "LOG_LEVEL": "WARNING",
            **settings,
        }
        environment = manage_env(**values)
        for name in ("ORCHESTRATOR_SLOTS", "REDIS_URL"):
            if name not in settings:
                environment.pop(name, None)
        if "ORCHESTRATOR_PROVIDERS" in settings and "ORCHESTRATOR_BASE_URL" not in settings:
            environment.pop("ORCHESTRATOR_BASE_URL", None)
        return environment

    return env


@pytest.fixture
def launch(alice: Any, tmp_path: Path) -> Callable[..., Launched]:
    """`launch(env, target, band=...)`: launch_flow --wait for alice, to its end."""
    count = [0]

    def run(
        env: dict[str, str], target: Path, *, band: str = "small", timeout: float = 110
    ) -> Launched:
        count[0] += 1
        log = tmp_path / f"launch-{count[0]}.log"
        return finish_launch(start_launch(env, target, band=band, log=log), log, timeout)

    return run


# --- what a person sees afterwards ---------------------------------------------------------


@pytest.fixture
def api(alice_token: str) -> Callable[[str], Any]:
    """`api(path)`: GET /api/v1/<path> with alice's Bearer token; the JSON answer."""
    from django.test import Client

    client = Client()

    def get(path: str) -> Any:
        response = client.get(f"/api/v1/{path}", HTTP_AUTHORIZATION=f"Bearer {alice_token}")
        assert response.status_code == 200, (path, response.status_code, response.content[:500])
        if response["Content-Type"].startswith("application/json"):
            return strict_json(response.content.decode())
        return response.content.decode()

    return get


@pytest.fixture
def pane(alice: Any) -> Callable[[str], str]:
    """`pane(run_id)`: the run's pane as alice's browser gets it."""
    from django.test import Client

    client = Client()
    client.force_login(alice)

    def get(run_id: str) -> str:
        response = client.get(f"/runs/{run_id}/")
        assert response.status_code == 200, response.status_code
        return response.content.decode()

    return get
