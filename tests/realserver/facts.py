"""The real-server tier's facts: each test writes down what the server did, as one line per
topic, and the run prints them all at its end (registered from tests/conftest.py, so under
pytest-xdist the controller, which collects no tests, still gathers and prints the workers')."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Observations:
    """What the real server did, one line per topic (printed in topic order)."""

    lines: dict[str, str] = field(default_factory=dict)

    def note(self, topic: str, text: str) -> None:
        self.lines[topic] = " ".join(text.split())[:240]


OBSERVATIONS = pytest.StashKey[Observations]()
ARTEFACTS = pytest.StashKey[tuple[Path, Path]]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist a worker hands its facts to the controller, which prints them all."""
    observations = session.config.stash.get(OBSERVATIONS, None)
    workeroutput = getattr(session.config, "workeroutput", None)
    if observations is not None and workeroutput is not None:
        binary, model = session.config.stash[ARTEFACTS]
        workeroutput["realserver"] = {
            "artefacts": [str(binary), str(model)],
            "facts": observations.lines,
        }


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the controller: gather each worker's facts (see pytest_sessionfinish)."""
    handed = getattr(node, "workeroutput", {}).get("realserver")
    if handed is None:
        return
    config = node.config
    binary, model = handed["artefacts"]
    config.stash[ARTEFACTS] = (Path(binary), Path(model))
    gathered = config.stash.setdefault(OBSERVATIONS, Observations())
    gathered.lines.update(handed["facts"])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if hasattr(config, "workeroutput"):
        return  # a worker: the controller prints
    observations = config.stash.get(OBSERVATIONS, None)
    if observations is None:
        return
    binary, model = config.stash[ARTEFACTS]
    terminalreporter.write_sep("-", f"real llama.cpp server: {len(observations.lines)} facts")
    terminalreporter.write_line(f"server {binary} · model {model.name}")
    for topic, text in sorted(observations.lines.items()):
        terminalreporter.write_line(f"{topic}: {text}")
