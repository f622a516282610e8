"""Races against the one way into the target: folders swapped for links while every reader runs.

A swapper thread renames a folder of the working tree, `.git/objects` or `.git/objects/pack`
aside and puts a link to an outside tree in its place (the same names, holding a sentinel, and
another repository whose commit carries one), then puts it back, again and again. Meanwhile
every reader runs: the tools (read_file, grep, glob, list_dir, file_info, git_show, git_diff,
git_log, git_blame), the citation reader and the fingerprint. The sentinel must never appear.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.citations import CheckStatus
from runs.engine.report.reporting import ConfinedLines
from runs.engine.target import fingerprint
from runs.engine.target.confinement import Confinement, Refused
from runs.engine.target.gitread import GitReader
from runs.engine.target.tools import ReadOnlyTools
from tests.hostile_git import git
from tests.swapper import SWAPPED, swap_until_stopped

SENTINEL = "OUTSIDE_RACE_SENTINEL_5f1d"
ROUNDS = 24  # calls per reader; each runs while folders are being swapped


@dataclass
class Tally:
    calls: int = 0
    swaps: int = 0  # swaps completed while this reader's calls ran
    refusals: int = 0
    answers: int = 0
    leaks: int = 0
    refusal: str = ""  # the first refusal, to show that it is a sentence

    def add(self, ok: bool, text: str, swaps: int) -> None:
        self.calls += 1
        self.swaps += swaps
        self.answers += ok
        self.refusals += not ok
        self.leaks += SENTINEL in text
        if not ok and not self.refusal:
            self.refusal = text


@dataclass(frozen=True)
class Trees:
    target: Path
    outside: Path
    borrowed: str  # the outside repository's commit, named by a ref inside the target


def _files(root: Path, text: str) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text(f"def main():\n    return '{text}'\n")
    (root / "src" / "pkg" / "util.py").write_text(f"VALUE = '{text}'\n")


@pytest.fixture
def trees(tmp_path: Path) -> Trees:
    """A target repository and, beside it, an outside one with the same names and a sentinel."""
    outside = tmp_path / "outside"
    _files(outside, SENTINEL)
    (outside / "src" / f"{SENTINEL}.py").write_text("x = 1\n")  # a name that must not be listed
    git(outside, "init", "-q", "-b", "main")
    git(outside, "add", "-A")
    git(outside, "commit", "-qm", f"commit {SENTINEL}")
    git(outside, "gc", "-q")
    (outside / "src" / "app.py").write_text(f"changed = '{SENTINEL}'\n")  # its diff differs too
    borrowed = git(outside, "rev-parse", "HEAD").strip()
    target = tmp_path / "target"
    _files(target, "inside")
    git(target, "init", "-q", "-b", "main")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "first")
    git(target, "gc", "-q")  # history in a pack: the pack folder is worth swapping
    (target / "src" / "pkg" / "util.py").write_text("VALUE = 'edited'\n")
    git(target, "commit", "-qam", "second")  # and a loose object or two
    (target / "src" / "app.py").write_text("def main():\n    return 'working'\n")
    (target / ".git" / "refs" / "heads" / "borrowed").write_text(borrowed + "\n")
    return Trees(target=target.resolve(), outside=outside.resolve(), borrowed=borrowed)


@dataclass
class Swapper:
    swaps: Any
    stop: Any

    @property
    def count(self) -> int:
        return int(self.swaps.value)


@pytest.fixture
def swapper(trees: Trees) -> Iterator[Swapper]:
    spawn = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    running = Swapper(swaps=spawn.Value("q", 0), stop=spawn.Event())
    process = spawn.Process(
        target=swap_until_stopped,
        args=(str(trees.target), str(trees.outside), running.swaps, running.stop),
        daemon=True,
    )
    process.start()
    while running.count == 0 and process.is_alive():
        os.sched_yield()  # the readers start once swapping has
    yield running
    running.stop.set()
    process.join(timeout=30)
    assert process.exitcode == 0


def _readers(trees: Trees) -> dict[str, Callable[[], tuple[bool, str]]]:
    tools = ReadOnlyTools(trees.target)

    def tool(name: str, args: dict[str, object]) -> Callable[[], tuple[bool, str]]:
        def call() -> tuple[bool, str]:
            result = tools.call(name, args)
            return result.ok, result.content

        return call

    def cited() -> tuple[bool, str]:
        lines = ConfinedLines(str(trees.target))("src/pkg/util.py")
        return not isinstance(lines, CheckStatus), json.dumps(lines, default=str)

    def fingerprinted() -> tuple[bool, str]:
        taken = fingerprint.take(trees.target)
        return not taken.repository, json.dumps(taken.to_dict())

    return {
        "read_file": tool("read_file", {"path": "src/pkg/util.py"}),
        "grep": tool("grep", {"pattern": "VALUE|return|OUTSIDE", "path": "."}),
        "glob": tool("glob", {"pattern": "**/*.py"}),
        "list_dir": tool("list_dir", {"path": ".", "depth": 3}),
        "file_info": tool("file_info", {"path": "src/app.py"}),
        "git_show": tool("git_show", {"rev": "HEAD", "path": "src/pkg/util.py"}),
        "git_show borrowed": tool("git_show", {"rev": trees.borrowed}),
        "git_diff": tool("git_diff", {}),
        "git_log": tool("git_log", {"max_count": 5}),
        "git_log path": tool("git_log", {"max_count": 5, "path": "src/app.py"}),
        "git_blame": tool("git_blame", {"path": "src/pkg/util.py"}),
        "citation reader": cited,
        "fingerprint": fingerprinted,
    }


def test_every_reader_answers_from_the_target_when_nothing_is_swapped(trees: Trees):
    """The race below means something: unswapped, each reader answers (but the borrowed commit,
    which only another repository holds)."""
    answers = {name: read() for name, read in _readers(trees).items()}
    assert [name for name, (ok, _) in answers.items() if not ok] == ["git_show borrowed"]
    assert not [name for name, (_, text) in answers.items() if SENTINEL in text]
    assert "VALUE = 'edited'" in answers["git_show"][1]
    assert "+    return 'working'" in answers["git_diff"][1]  # the working tree is read


def test_no_reader_ever_reads_outside_while_folders_are_swapped_for_links(
    trees: Trees, swapper: Swapper, capsys: pytest.CaptureFixture[str]
):
    """Every reader, many times, under swaps of working-tree folders, objects and packs."""
    readers = _readers(trees)
    tallies = {name: Tally() for name in readers}
    for _ in range(ROUNDS):
        for name, read in readers.items():
            before = swapper.count
            ok, text = read()
            tallies[name].add(ok, text, swapper.count - before)
    swapper.stop.set()
    with capsys.disabled():
        print(f"\nrace: {swapper.count} swaps of {', '.join(SWAPPED)} while the readers ran")
        for name, tally in tallies.items():
            print(
                f"  {name:18} calls {tally.calls:3}  swaps {tally.swaps:5}  "
                f"refusals {tally.refusals:3}  leaks {tally.leaks}  e.g. {tally.refusal[:90]!r}"
            )
    assert {name: t.leaks for name, t in tallies.items() if t.leaks} == {}
    assert swapper.count >= ROUNDS, "the folders were swapped while the readers ran"
    assert sum(t.swaps for t in tallies.values()) > 0
    assert sum(t.refusals for t in tallies.values() if t.answers) > 0, "the swaps were met"


def test_a_folder_swapped_for_a_link_after_the_path_was_resolved_is_never_read_through(
    trees: Trees,
):
    """The check-then-open gap itself: resolved while a folder, opened once it is a link."""
    confine = Confinement(trees.target)
    real = confine.resolve("src/pkg/util.py")
    shutil.move(trees.target / "src" / "pkg", trees.target / "pkg.aside")
    (trees.target / "src" / "pkg").symlink_to(trees.outside / "src" / "pkg")
    with pytest.raises(Refused, match="a link on the way") as refused:
        confine.read_bytes(real, 1000)
    assert SENTINEL not in str(refused.value)
    assert ReadOnlyTools(trees.target).call("git_diff", {}).content.count(SENTINEL) == 0


def test_an_object_store_swapped_for_another_repositorys_is_refused(trees: Trees):
    """`.git/objects/pack` now leads to another repository: the walk meets the link."""
    pack = trees.target / ".git" / "objects" / "pack"
    shutil.move(pack, pack.with_name("pack.aside"))
    pack.symlink_to(trees.outside / ".git" / "objects" / "pack")
    answer = GitReader(trees.target).show(trees.borrowed)
    assert not answer.ok and SENTINEL not in answer.text
    assert "objects/" in answer.text


def test_objects_hard_linked_from_another_repository_are_refused(trees: Trees):
    """A pack linked in from elsewhere may hold any repository's history: not read."""
    pack = trees.target / ".git" / "objects" / "pack"
    for theirs in (trees.outside / ".git" / "objects" / "pack").glob("pack-*"):
        os.link(theirs, pack / theirs.name)
    answer = GitReader(trees.target).show(trees.borrowed)
    assert not answer.ok and SENTINEL not in answer.text
    assert "hard links" in answer.text and "--no-hardlinks" in answer.text


def test_a_loose_object_is_only_ever_read_as_the_object_its_bytes_are(trees: Trees):
    """Loose objects are packed and hashed before git reads them: a file holding another
    object's bytes is not shown under the name it was given (plain git shows it)."""
    oid = git(trees.target, "rev-parse", "HEAD:src/pkg/util.py").strip()
    loose = trees.target / ".git" / "objects" / oid[:2] / oid[2:]
    planted = git(trees.outside, "hash-object", "-w", "src/app.py").strip()
    loose.chmod(0o644)
    loose.write_bytes((trees.outside / ".git" / "objects" / planted[:2] / planted[2:]).read_bytes())
    assert SENTINEL in git(trees.target, "cat-file", "-p", oid)  # git takes the name's word
    answer = GitReader(trees.target).show("HEAD", "src/pkg/util.py")
    assert not answer.ok and "object is missing" in answer.text and SENTINEL not in answer.text
    assert GitReader(trees.target).log().ok  # the other objects are read as before
