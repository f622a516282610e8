"""Searches in bounded time: RE2 patterns, globs of many `**`, a walk limit and a deadline."""

from __future__ import annotations

from pathlib import Path

import pytest

from runs.engine.target.tools import ReadOnlyTools, ToolLimits
from tests.hostile import CATASTROPHIC_PATTERNS

LONG_LINE = "a" * 30_000 + "#"  # one long identifier: what made `(\w+)+!` take 56 s
CATASTROPHIC = CATASTROPHIC_PATTERNS


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "long.py").write_text(f"{LONG_LINE}\nfound = 1\n")
    (root / "a" / "b" / "c" / "deep.py").write_text("def deep():\n    return 1\n")
    (root / "config.ini").write_text("url = https://deploy:hunter2-TOKEN@git.example.com/r\n")
    return root


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_a_catastrophic_pattern_on_a_long_line_finishes(tree: Path, pattern: str):
    """RE2 is linear: each of these answers (no match) instead of hanging the worker."""
    result = ReadOnlyTools(tree).call("grep", {"pattern": pattern})
    assert result.ok, result.content
    assert "long.py" not in result.content
    assert "time limit" not in result.content, "finished well inside the deadline"


def test_at_least_ten_catastrophic_patterns_are_tried():
    print(f"{len(CATASTROPHIC)} catastrophic patterns")
    assert len(CATASTROPHIC) >= 10


@pytest.mark.parametrize("pattern", [r"(?=a)b", r"(?<!a)b", r"(a)\1", r"a{1001}"])
def test_patterns_re2_cannot_run_are_refused_with_the_reason(tree: Path, pattern: str):
    result = ReadOnlyTools(tree).call("grep", {"pattern": pattern})
    assert not result.ok
    assert "invalid regular expression" in result.content and "RE2" in result.content


def test_python_style_patterns_the_agents_use_still_work(tree: Path):
    result = ReadOnlyTools(tree).call("grep", {"pattern": r"(?i)^\s*DEF\s+(?P<name>\w+)\("})
    assert "a/b/c/deep.py:1:def deep():" in result.content


def test_a_glob_of_many_double_stars_finishes_and_still_matches(tree: Path):
    result = ReadOnlyTools(tree).call("glob", {"pattern": "**/" * 60 + "*.py"})
    assert result.ok
    assert set(result.content.splitlines()) == {"long.py", "a/b/c/deep.py"}
    nested = ReadOnlyTools(tree).call("glob", {"pattern": "**" + "/**" * 70 + "/x*y*z*"})
    assert nested.ok and nested.content == "(no matches)"


def test_a_walk_stops_at_its_entry_limit_and_says_so(tmp_path: Path):
    root = tmp_path / "wide"
    root.mkdir()
    for i in range(120):
        (root / f"f{i:03}.py").write_text("x = 1\n")
    small = ReadOnlyTools(root, limits=ToolLimits(max_walk_entries=50))
    for name, args in (("grep", {"pattern": "nothing"}), ("glob", {"pattern": "*.py"})):
        result = small.call(name, args)
        assert result.ok and "stopped after 50 entries" in result.content, name


def test_a_search_stops_at_its_deadline_and_says_so(tree: Path):
    """A zero budget: the search gives up at once with a sentence, not a hang."""
    result = ReadOnlyTools(tree, limits=ToolLimits(search_seconds=0)).call("grep", {"pattern": "x"})
    assert result.ok and "time limit" in result.content


def test_grep_searches_the_redacted_text_so_a_credential_cannot_be_probed(tree: Path):
    """A pattern that would match only the hidden password finds nothing."""
    toolbox = ReadOnlyTools(tree)
    assert "[0 matches]" in toolbox.call("grep", {"pattern": "hunter2"}).content
    assert "[0 matches]" in toolbox.call("grep", {"pattern": "deploy:h"}).content
    shown = toolbox.call("grep", {"pattern": "git.example.com"}).content
    assert "config.ini:1:url = https://[redacted]@git.example.com/r" in shown
    assert "hunter2" not in toolbox.call("read_file", {"path": "config.ini"}).content
