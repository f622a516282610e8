"""One vocabulary for a run's and a step's state: runs/labels.py is the only module that spells
the words; the pane, the stream's status lines, the timeline, the terminal, the exports and
the admin all ask it."""

from __future__ import annotations

import ast
from pathlib import Path

from runs import labels
from runs.models import RunStatus, StepPhase

ROOT = Path(__file__).resolve().parent.parent
OWNER = ROOT / "runs" / "labels.py"
# Where words for a person are written: the product's code, templates and scripts.
PRODUCT = ("runs", "flows", "orchestrator_site", "templates", "static")


def phrases() -> set[str]:
    """Every state phrase of more than one word that runs.labels owns."""
    owned = {
        *labels.RUN_WORDS.values(),
        *labels.PHASE_WORDS.values(),
        *labels.STRETCH_WORDS.values(),
    }
    # Words the old vocabularies used for the same states, which must not come back.
    retired = {
        "waiting for a slot",
        "waiting for a worker",
        "waiting for dependencies",
        "waiting for its dependencies",
        "waiting for the model's first byte",
        "queued for a model slot",
        "model generating",
        "running tools",
        "ready, waiting",
    }
    return {phrase.lower() for phrase in owned | retired if " " in phrase}


def python_strings(path: Path) -> list[str]:
    """The string literals of a module, its docstrings and comments left out (they explain,
    they do not show anything)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def spelled_outside_labels() -> list[str]:
    found = []
    wanted = phrases()
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*")):
            if path == OWNER or "migrations" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py":
                texts = python_strings(path)
            elif path.suffix in (".html", ".js", ".txt"):
                texts = [path.read_text()]
            else:
                continue
            for text in texts:
                found += [f"{path.relative_to(ROOT)}: {p!r}" for p in wanted if p in text.lower()]
    return found


def test_no_module_but_labels_spells_a_state_in_words():
    assert len(phrases()) >= 15, "the check looks for the words labels owns"
    assert spelled_outside_labels() == []


def test_the_check_would_see_a_second_spelling(tmp_path):
    """Not vacuous: a literal with one of the words is found, a docstring is not."""
    module = tmp_path / "copy.py"
    module.write_text('"""Says waiting for a model slot."""\nWORDS = "Waiting for a model slot"\n')
    assert python_strings(module) == ["Waiting for a model slot"]
    assert "waiting for a model slot" in phrases()


def test_every_status_and_phase_has_its_words_in_labels():
    assert set(labels.RUN_WORDS) == set(RunStatus.values)
    assert set(labels.PHASE_WORDS) == set(StepPhase.values) - {StepPhase.NONE}
