"""The real-server tier: llama.cpp's `llama-server` built from source, with a tiny random model.

The binary is built (or found in the cache) once, when the tier is collected, outside any
test's timeout; the first build takes minutes. Every test records what the server did as a
one-line observation, and the tier prints them at the end of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.llamacpp.build import ensure_server, is_built
from devtools.llamacpp.model import ensure_model
from devtools.llamacpp.server import LlamaServer
from devtools.testing import free_port
from tests.realserver.facts import ARTEFACTS, OBSERVATIONS, Observations

HERE = Path(__file__).resolve().parent


def _in_tier(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects, so `-m "not realserver"` skips the tier
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _in_tier(item):
            item.add_marker(pytest.mark.realserver)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the server before any test runs, so the build is not charged to one test's timeout."""
    if any(_in_tier(item) for item in session.items):
        if not is_built():
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    "building llama.cpp's llama-server once into the user's cache "
                    "(several minutes; `make llama-server` does the same)"
                )
        session.config.stash[ARTEFACTS] = (ensure_server(), ensure_model())
        session.config.stash[OBSERVATIONS] = Observations()


@pytest.fixture(scope="session")
def observed(pytestconfig: pytest.Config) -> Observations:
    """Where tests write down what the server did."""
    return pytestconfig.stash[OBSERVATIONS]


@pytest.fixture(scope="session")
def llama_artefacts(pytestconfig: pytest.Config) -> tuple[Path, Path]:
    """The built `llama-server` binary and the tiny model."""
    return pytestconfig.stash[ARTEFACTS]


@pytest.fixture(scope="session")
def start_server(
    llama_artefacts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LlamaServer]]:
    """Start a server with the given slots and context; every server started is stopped."""
    binary, model = llama_artefacts
    logs = tmp_path_factory.mktemp("llama-logs")
    started: list[LlamaServer] = []

    def start(
        *, slots: int | None = 1, context: int = 2048, extra_args: tuple[str, ...] = ()
    ) -> LlamaServer:
        server = LlamaServer(
            binary=binary,
            model=model,
            port=free_port(),
            log_path=logs / f"llama-server-{len(started) + 1}.log",
            slots=slots,
            context=context,
            extra_args=extra_args,
        )
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def one_slot(start_server: Callable[..., LlamaServer]) -> LlamaServer:
    """The shared server: one slot, 2048 tokens of context."""
    return start_server(slots=1, context=2048)


SHORT_TURN = 128  # output tokens per turn under `short_turns`


@pytest.fixture
def short_turns(monkeypatch: pytest.MonkeyPatch) -> int:
    """Runs whose fast-mode turns stop at SHORT_TURN output tokens (the flow's own limit is
    1,024). The random model writes gibberish up to each turn's limit, and llama-server's
    `--n-predict` does not cap a request's own `max_tokens`, so a run's worth of full turns is
    minutes of one CPU thread for what an engine test checks. The depth is patched where the
    engine reads it (runs.engine.agent.context), so every attempt of the run gets it."""
    from flows.registry import get_flow
    from runs.engine.agent import context

    def shortened(slug: str) -> Any:
        flow = get_flow(slug)
        fast = flow.depth.fast.model_copy(update={"max_output_tokens": SHORT_TURN})
        return flow.model_copy(update={"depth": flow.depth.model_copy(update={"fast": fast})})

    monkeypatch.setattr(context, "get_flow", shortened)
    return SHORT_TURN
