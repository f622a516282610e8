"""Blind corpora: targets and model answers written from what the report promises, not its code.

Each target is copied under the test's own temporary directory, which the suite's autouse
fixture makes the allowed root, so the product reads it as it would read a user's project.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"


def contract(module: str, *names: str) -> list[Any]:
    """The named members of a product module, or a failure saying which promise is missing."""
    import importlib

    try:
        found = importlib.import_module(module)
    except ImportError as error:
        pytest.fail(f"contract missing: cannot import {module} ({error})", pytrace=False)
    missing = [name for name in names if not hasattr(found, name)]
    if missing:
        pytest.fail(
            f"contract missing: {module} has no {', '.join(missing)} "
            "(the blind harness needs it to read the marks)",
            pytrace=False,
        )
    return [getattr(found, name) for name in names]


@pytest.fixture
def allowed_root(settings: Any, tmp_path: Path) -> Path:
    """The directory targets are copied into; the product accepts targets under it."""
    root = tmp_path.resolve()
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [root]
    return root


@pytest.fixture
def citation_target(allowed_root: Path) -> Path:
    """The small project the citation answers cite (bytes kept: its CRLF file stays CRLF)."""
    return Path(shutil.copytree(DATA / "citations" / "target", allowed_root / "shop"))


@pytest.fixture
def citation_key() -> list[dict[str, Any]]:
    with (DATA / "citations" / "key.toml").open("rb") as handle:
        return list(tomllib.load(handle)["citation"])


@pytest.fixture
def citation_answers() -> dict[str, str]:
    folder = DATA / "citations" / "answers"
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.md"))}


@pytest.fixture
def forged() -> dict[str, Any]:
    """The forged synthesizer and validator answers and what each forges."""
    folder = DATA / "forged"
    with (folder / "key.toml").open("rb") as handle:
        key = tomllib.load(handle)
    return {
        "key": key,
        "synthesis": (folder / "synthesis.md").read_text(encoding="utf-8"),
        "validation": (folder / "validation.md").read_text(encoding="utf-8"),
    }


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        cwd=root,
        check=True,
        capture_output=True,
        env={
            "GIT_AUTHOR_NAME": "Blind Tester",
            "GIT_AUTHOR_EMAIL": "blind@example.invalid",
            "GIT_COMMITTER_NAME": "Blind Tester",
            "GIT_COMMITTER_EMAIL": "blind@example.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(root.parent),
            "PATH": "/usr/bin:/bin",
        },
    )


@pytest.fixture
def secret_key() -> dict[str, Any]:
    with (DATA / "secrets" / "key.toml").open("rb") as handle:
        return tomllib.load(handle)


@pytest.fixture
def secret_repo(allowed_root: Path, secret_key: dict[str, Any]) -> Path:
    """The secret-laden project as a git repository: a first commit of every file, then a second
    that rotates the secrets the key's history lists (the old values live only in history)."""
    root = Path(shutil.copytree(DATA / "secrets" / "target", allowed_root / "vault"))
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A", "-f")
    _git(root, "commit", "-q", "-m", "First version of the service")
    for change in secret_key["history"]:
        path = root / change["path"]
        path.write_text(path.read_text().replace(change["old"], change["new"]))
    _git(root, "add", "-A", "-f")
    _git(root, "commit", "-q", "-m", "Rotate the credentials")
    return root


@pytest.fixture
def forged_run(alice: Any, citation_target: Path, forged: dict[str, Any]) -> Any:
    """A code review finished through the engine's own finish, whose synthesizer and validator
    answered with the forged texts (specialists answered plainly)."""
    from devtools.testing import finish_step
    from runs.engine.queue import scheduler
    from runs.models import FlowStep
    from runs.services import launch_run

    run = launch_run(flow="code-review", target=str(citation_target), owner=alice, focus="webhook")
    for step_id in scheduler.claim_steps("blind", 10, run_id=run.id):
        step = FlowStep.objects.get(id=step_id)
        finish_step(step_id, "blind", succeeded=True, output=f"{step.key}: nothing to add.")
    for key in ("synthesis", "validation"):
        [step_id] = scheduler.claim_steps("blind", 10, run_id=run.id)
        assert FlowStep.objects.get(id=step_id).key == key
        finish_step(step_id, "blind", succeeded=True, output=forged[key])
    run.refresh_from_db()
    return run
