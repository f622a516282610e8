"""The read-only proof: fingerprints of real repositories before and after."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runs.engine.target.fingerprint import Fingerprint, compare, describe, take
from tests.hostile_git import git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for n in range(5):
        (root / "src" / f"m{n}.py").write_text(f"x = {n}\n")
    (root / "README.md").write_text("# hi\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def test_an_untouched_target_is_unchanged(repo: Path):
    before, after = take(repo), take(repo)
    assert compare(before, after) == []
    assert describe(before, after) == "target unchanged during the run"
    assert before.digest == after.digest and before.file_count == 6
    assert before.branch == "refs/heads/main"
    assert before.head == git(repo, "rev-parse", "HEAD").strip()
    assert before.worktree == ()


def test_an_edited_file_is_named(repo: Path):
    before = take(repo)
    (repo / "src" / "m3.py").write_text("x = 33\n")
    after = take(repo)
    assert "changed: src/m3.py (size 6 -> 7 bytes)" in compare(before, after)
    assert "tracked files now differ from the index: modified: src/m3.py" in compare(before, after)
    assert describe(before, after).startswith("target changed during the run: ")
    assert after.worktree == ("modified: src/m3.py",)


def test_a_same_size_edit_is_named_by_its_time(repo: Path):
    before = take(repo)
    path = repo / "src" / "m1.py"
    path.write_text("x = 9\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert "changed: src/m1.py (modified)" in compare(before, take(repo))


def test_added_and_removed_files_are_named(repo: Path):
    before = take(repo)
    (repo / "src" / "m0.py").unlink()
    (repo / "notes.txt").write_text("new\n")
    changes = compare(before, take(repo))
    assert "added: notes.txt" in changes
    assert "removed: src/m0.py" in changes


def test_a_commit_moves_head_and_writes_the_index(repo: Path):
    before = take(repo)
    (repo / "README.md").write_text("# changed\n")
    git(repo, "commit", "-qam", "second")
    changes = compare(before, take(repo))
    assert any(change.startswith("HEAD moved from ") for change in changes)
    assert "the git index was written" in changes


def test_a_plain_directory_has_no_repository_state(tmp_path: Path):
    (tmp_path / "a.txt").write_text("a\n")
    fingerprint = take(tmp_path)
    assert fingerprint.head is None and fingerprint.repository == "not a git repository"
    assert fingerprint.file_count == 1


def test_a_bounded_walk_says_so_and_compares_what_both_cover(repo: Path):
    before = take(repo, max_entries=3)
    assert not before.complete and before.note == "stopped at 3 paths"
    assert list(before.entries) == ["README.md", "src", "src/m0.py"]
    assert compare(before, take(repo, max_entries=3)) == []
    assert "(stopped at 3 paths)" in describe(before, take(repo, max_entries=3))
    (repo / "src" / "m0.py").write_text("x = 100\n")
    (repo / "src" / "m4.py").write_text("x = 400\n")  # beyond the bound: not compared
    changes = compare(before, take(repo, max_entries=3))
    assert any("src/m0.py" in change for change in changes)
    assert not any("src/m4.py (" in change for change in changes)
    assert changes[-1].startswith("(only the paths both fingerprints cover were compared")


def test_links_are_recorded_not_followed(repo: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big.txt").write_text("x" * 1000)
    (repo / "escape").symlink_to(outside)
    before = take(repo)
    assert before.entries["escape"].startswith("l:")
    assert not any(path.startswith("escape/") for path in before.entries)
    (outside / "big.txt").write_text("y")
    assert compare(before, take(repo)) == []


def test_a_fingerprint_survives_storage(repo: Path):
    (repo / "src" / "m2.py").write_text("x = 22\n")
    before = take(repo)
    stored = json.loads(json.dumps(before.to_dict()))
    assert Fingerprint.from_dict(stored) == before
    assert compare(Fingerprint.from_dict(stored), take(repo)) == []


def test_a_missing_target_is_a_difference_not_an_error(repo: Path, tmp_path: Path):
    before = take(repo)
    moved = tmp_path / "moved"
    repo.rename(moved)
    after = take(repo)
    assert not after.complete and "cannot be opened" in after.note
    assert compare(before, after)
