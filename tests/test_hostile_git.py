"""Hostile repositories against the git tools: nothing runs, nothing named is opened, nothing
outside the target is read and no secret comes back. Each suite prints what it tried."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from runs.engine.target.fingerprint import take
from runs.engine.target.gitread import GitReader
from runs.engine.target.tools import ReadOnlyTools, ToolLimits
from tests.hostile_git import (
    EMPTY_TREE,
    command_repo,
    fifo_repo,
    git,
    markers,
    secret_repo,
)

FORMS: dict[str, list[dict[str, Any]]] = {
    "git_log": [
        {},
        {"max_count": 1},
        {"path": "a.txt"},
        {"path": "b.md"},
        {"path": "sub"},
        {"path": "."},
    ],
    "git_show": [
        {"rev": "HEAD"},
        {"rev": "HEAD~1"},
        {"rev": "main"},
        {"rev": "signed"},
        {"rev": "HEAD", "path": "a.txt"},
        {"rev": "HEAD", "path": "b.md"},
        {"rev": "HEAD", "path": "c.bin"},
        {"rev": "HEAD~1", "path": "sub/d.txt"},
        {"rev": "HEAD", "path": "sub"},
        {"rev": "HEAD:a.txt"},
    ],
    "git_blame": [
        {"path": "a.txt"},
        {"path": "a.txt", "start_line": 2, "end_line": 2},
        {"path": "b.md"},
        {"path": "sub/d.txt"},
        {"path": "c.bin"},
    ],
    "git_diff": [
        {},
        {"path": "a.txt"},
        {"path": "b.md"},
        {"path": "sub"},
        {"rev_from": "HEAD~1"},
        {"rev_from": "signed"},
        {"rev_from": "HEAD~1", "rev_to": "HEAD"},
        {"rev_from": "HEAD~1", "rev_to": "signed"},
        {"rev_from": EMPTY_TREE},
        {"rev_from": EMPTY_TREE, "rev_to": "HEAD"},
        {"rev_from": "HEAD~1", "rev_to": "HEAD", "path": "a.txt"},
    ],
}


def _every_file(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every path under root, `.git` included, links not followed."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (info.st_size, info.st_mtime_ns)
    return found


def _calls() -> list[tuple[str, dict[str, Any]]]:
    return [(tool, args) for tool, forms in FORMS.items() for args in forms]


def test_the_hostile_repository_runs_commands_under_plain_git(tmp_path: Path):
    """The control: the same repository does make an ordinary git run its commands."""
    repo = command_repo(tmp_path)
    for args in (
        ["status"],
        ["diff", "HEAD"],
        ["diff", "HEAD~1", "HEAD"],
        ["diff", "--no-ext-diff", "HEAD~1", "HEAD"],
        ["-c", "filter.proc.process=", "diff", "HEAD~1", "HEAD", "--", "b.md"],
        ["-c", "filter.proc.process=", "diff", "--no-ext-diff", "HEAD", "--", "e.cfg"],
        ["log", "-1", "--show-signature", "signed"],
        ["blame", "sub/d.txt"],
        ["checkout", "-f", "HEAD~1", "--", "sub/d.txt"],
    ):
        git(repo.root, *args, check=False)
    ran = markers(repo.marker_dir)
    for expected in (
        "ran-fsmonitor",
        "ran-filter-clean",
        "ran-filter-smudge",
        "ran-filter-process",
        "ran-diff-textconv",
        "ran-diff-command",
        "ran-diff-external",
        "ran-gpg-program",
        "ran-include-filter",
        "ran-include-textconv",
        "ran-info-attributes-filter",
        "ran-info-attributes-textconv",
        "ran-hook-post-index-change",
        "ran-hook-post-checkout",
    ):
        assert expected in ran, f"{expected} did not run under plain git: {ran}"


def test_no_repository_command_runs_through_any_git_tool(tmp_path: Path, capsys):
    """Every command mechanism, through every git tool and many argument forms: 0 run."""
    repo = command_repo(tmp_path)
    sandbox = ReadOnlyTools(repo.root)
    assert sandbox.has_git
    before = _every_file(repo.root)
    answers = {}
    for tool, args in _calls():
        answers[(tool, repr(args))] = sandbox.call(tool, args)
    take(repo.root)  # the read-only proof reads the repository too
    ran = markers(repo.marker_dir)
    tries = len(repo.mechanisms) * len(answers)
    with capsys.disabled():
        print(
            f"\ngit attacks: {len(repo.mechanisms)} mechanisms x {len(FORMS)} tools "
            f"({len(answers)} argument forms) = {tries} tries, {len(ran)} executed"
        )
    assert ran == []
    assert _every_file(repo.root) == before  # .git included: no index refresh, no object
    # The tools still answered: safety did not come from refusing everything.
    answered = [key for key, result in answers.items() if result.ok]
    assert len(answered) >= len(answers) - 3, [k for k in answers if k not in answered]
    assert "second" in answers[("git_log", "{}")].content
    assert "+dirty" in answers[("git_diff", "{}")].content
    assert "-beta" in answers[("git_diff", repr({"rev_from": "HEAD~1", "rev_to": "HEAD"}))].content
    assert "signed commit" in answers[("git_show", repr({"rev": "signed"}))].content


def test_the_working_tree_comparison_ignores_core_worktree(tmp_path: Path):
    """A config that moves the working tree elsewhere is never read: the target is compared."""
    repo = command_repo(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("from elsewhere\n")
    git(repo.root, "config", "core.worktree", str(elsewhere))
    answer = GitReader(repo.root).diff(path="a.txt")
    assert answer.ok and "+dirty" in answer.text and "elsewhere" not in answer.text
    assert markers(repo.marker_dir) == []


def test_files_named_by_config_are_never_opened(tmp_path: Path, capsys):
    """Config keys and files naming FIFOs: opening any would stall the call; none does."""
    root, named = fifo_repo(tmp_path)
    sandbox = ReadOnlyTools(root, limits=ToolLimits(git_timeout=5.0))
    forms = [
        ("git_log", {}),
        ("git_log", {"path": "a.txt"}),
        ("git_show", {"rev": "HEAD"}),
        ("git_show", {"rev": "HEAD", "path": "a.txt"}),
        ("git_blame", {"path": "a.txt"}),
        ("git_diff", {}),
        ("git_diff", {"path": "a.txt"}),
        ("git_diff", {"rev_from": EMPTY_TREE, "rev_to": "HEAD"}),
    ]
    results = [sandbox.call(tool, args) for tool, args in forms]
    fingerprint = take(root, time_limit=10)
    stalled = [form for form, result in zip(forms, results, strict=True) if not result.ok]
    with capsys.disabled():
        print(
            f"\ngit named files: {len(named)} FIFOs x {len(forms)} calls = "
            f"{len(named) * len(forms)} tries, {len(stalled)} stalled"
        )
    assert stalled == []
    assert "+two" in results[5].content
    assert ".gitattributes: changed, not readable" in results[5].content
    assert fingerprint.head is not None and fingerprint.complete


def _outside_repo(base: Path) -> Path:
    outside = base / "outside"
    outside.mkdir()
    git(outside, "init", "-q", "-b", "main")
    (outside / "private.txt").write_text("OUTSIDE_SECRET_41c7\n")
    git(outside, "add", "-A")
    git(outside, "commit", "-qm", "OUTSIDE_COMMIT_MESSAGE")
    return outside


def _git_file(target: Path, outside: Path) -> None:
    (target / ".git").write_text(f"gitdir: {outside / '.git'}\n")


def _git_file_relative(target: Path, outside: Path) -> None:
    (target / ".git").write_text("gitdir: ../outside/.git\n")


def _git_link(target: Path, outside: Path) -> None:
    (target / ".git").symlink_to(outside / ".git")


def _linked_worktree(target: Path, outside: Path) -> None:
    (target / ".git").mkdir()
    (target / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (target / ".git" / "commondir").write_text(str(outside / ".git"))


@pytest.mark.parametrize(
    "arrange",
    [_git_file, _git_file_relative, _git_link, _linked_worktree],
    ids=lambda f: f.__name__,
)
def test_a_git_directory_outside_the_target_is_refused(tmp_path: Path, arrange):
    """`.git` as a file, a link or a linked worktree leading outside: refused with a sentence."""
    outside = _outside_repo(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    (target / "main.py").write_text("print(1)\n")
    arrange(target, outside)
    sandbox = ReadOnlyTools(target)
    assert not sandbox.has_git
    texts = [sandbox.call(tool, args).content for tool, args in _calls()]
    reader = GitReader(target)
    texts += [reader.log().text, reader.show("HEAD").text, reader.diff().text]
    assert "outside the target" in texts[0]
    assert all("OUTSIDE_" not in text for text in texts)
    assert "OUTSIDE_" not in str(take(target).to_dict())


def test_a_git_link_inside_the_target_is_followed(tmp_path: Path):
    """A `.git` link to a repository directory inside the target is fine."""
    target = tmp_path / "target"
    target.mkdir()
    git(target, "init", "-q", "-b", "main")
    (target / "a.txt").write_text("one\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "inside")
    (target / ".git").rename(target / "repo.git")
    (target / ".git").symlink_to("repo.git")
    assert "inside" in ReadOnlyTools(target).call("git_log", {}).content


def test_objects_borrowed_from_outside_are_not_read(tmp_path: Path):
    """objects/info/alternates is left out: a ref to an outside commit finds nothing."""
    outside = _outside_repo(tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    git(target, "init", "-q", "-b", "main")
    (target / "a.txt").write_text("one\n")
    git(target, "add", "-A")
    git(target, "commit", "-qm", "mine")
    alternates = target / ".git" / "objects" / "info" / "alternates"
    alternates.write_text(str(outside / ".git" / "objects") + "\n")
    borrowed = git(outside, "rev-parse", "HEAD").strip()
    (target / ".git" / "refs" / "heads" / "borrowed").write_text(borrowed + "\n")
    assert "OUTSIDE_COMMIT" in git(target, "log", "-1", "borrowed")  # plain git reads it
    sandbox = ReadOnlyTools(target)
    texts = [
        sandbox.call("git_show", {"rev": "borrowed"}).content,
        sandbox.call("git_show", {"rev": borrowed}).content,
        sandbox.call("git_show", {"rev": "borrowed", "path": "private.txt"}).content,
        sandbox.call("git_diff", {"rev_from": "borrowed", "rev_to": "HEAD"}).content,
    ]
    assert all("OUTSIDE_" not in text for text in texts)
    assert "mine" in sandbox.call("git_log", {}).content


def test_links_in_the_object_store_refuse_the_repository(tmp_path: Path):
    """A loose object or pack that is a link could read another repository's files."""
    outside = _outside_repo(tmp_path)
    target = tmp_path / "target"
    shutil.copytree(outside, target, symlinks=True)
    loose = next(p for p in (target / ".git" / "objects").glob("??/*"))
    loose.unlink()
    loose.symlink_to(outside / ".git" / "objects" / loose.parent.name / loose.name)
    answer = GitReader(target).log()
    assert not answer.ok and "holds a link or special file" in answer.text


def test_a_refs_folder_that_links_outside_is_refused(tmp_path: Path):
    outside = _outside_repo(tmp_path)
    target = tmp_path / "target"
    shutil.copytree(outside, target)
    shutil.rmtree(target / ".git" / "refs")
    (target / ".git" / "refs").symlink_to(outside / ".git" / "refs")
    answer = GitReader(target).log()
    assert not answer.ok and answer.text.startswith("refs/ points outside the target")


def test_a_fifo_in_the_pack_folder_refuses_instead_of_stalling(tmp_path: Path):
    target = tmp_path / "target"
    shutil.copytree(_outside_repo(tmp_path), target)
    os.mkfifo(target / ".git" / "objects" / "pack" / "pack-0000.idx")
    answer = GitReader(target).log()
    assert not answer.ok and "special file" in answer.text


def test_special_refs_and_head_never_block_or_escape(tmp_path: Path):
    """A FIFO packed-refs, a ref that links outside and a HEAD link are refused or skipped."""
    target = tmp_path / "target"
    shutil.copytree(_outside_repo(tmp_path), target)
    (tmp_path / "passwd").write_text("root:x:0:0:OUTSIDE_PASSWD\n")
    (target / ".git" / "refs" / "heads" / "evil").symlink_to(tmp_path / "passwd")
    os.mkfifo(target / ".git" / "packed-refs")
    answer = GitReader(target).log()
    assert not answer.ok and "packed-refs is not a plain file" in answer.text
    (target / ".git" / "packed-refs").unlink()
    answer = GitReader(target).show("evil")
    assert not answer.ok and "OUTSIDE_PASSWD" not in answer.text
    head = target / ".git" / "HEAD"
    head.unlink()
    head.symlink_to(tmp_path / "passwd")
    answer = GitReader(target).log()
    assert not answer.ok and "OUTSIDE_PASSWD" not in answer.text


def test_no_secret_reaches_any_git_answer(tmp_path: Path, capsys):
    """Secrets by name, content and URL, through every tool and form: 0 secret bytes out."""
    repo = secret_repo(tmp_path)
    sandbox = ReadOnlyTools(repo.root)
    leaks = []
    results = {}
    for tool, args in repo.forms:
        result = sandbox.call(tool, args)
        results[(tool, repr(args))] = result
        leaks += [
            (tool, args, secret)
            for secret in repo.secrets
            if secret in result.content or secret in result.summary
        ]
    tools = {tool for tool, _ in repo.forms}
    with capsys.disabled():
        print(
            f"\ngit secrets: {len(repo.secrets)} secrets x {len(repo.forms)} forms over "
            f"{len(tools)} tools = {len(repo.secrets) * len(repo.forms)} checks, "
            f"{len(leaks)} leaked"
        )
    assert leaks == []
    # What may be shown still is.
    head = results[("git_show", repr({"rev": "HEAD~1"}))]
    assert head.ok and "hello again" in head.content and "not shown" in head.content
    worktree = results[("git_diff", "{}")].content
    assert "notes.txt: changed, holds a private key" in worktree
    assert "[not shown:" in worktree and "[secret file]" in worktree and ".env" not in worktree
    ci = results[("git_blame", repr({"path": "ci.yml"}))]
    assert ci.ok and "[redacted]@git.example.com" in ci.content


@pytest.mark.parametrize(
    "rev",
    [
        "--output=/tmp/owned",
        "-p",
        "--ext-diff",
        "HEAD:a.txt",
        ":a.txt",
        "HEAD..main",
        "HEAD...main",
        "@{-1}",
        "HEAD@{1}",
        "main^{/first}",
        ":/first",
        "HEAD^{tree}",
        "a b",
        "HEAD\n--output=x",
        "",
        "x" * 300,
    ],
)
def test_revisions_that_are_not_plain_names_are_refused(tmp_path: Path, rev: str):
    """Options, paths, ranges, reflogs and searches never reach git as a revision."""
    repo = command_repo(tmp_path)
    sandbox = ReadOnlyTools(repo.root)
    for tool, args in (
        ("git_show", {"rev": rev}),
        ("git_diff", {"rev_from": rev}),
        ("git_diff", {"rev_from": "HEAD", "rev_to": rev}),
    ):
        result = sandbox.call(tool, args)
        assert not result.ok and "not a revision" in result.content
    assert not Path("/tmp/owned").exists()
    assert markers(repo.marker_dir) == []


def test_a_stalled_git_is_stopped_at_the_time_limit(tmp_path: Path, monkeypatch):
    """git runs in its own process group; when the call's time is up the group is killed.

    The stalled git is a stand-in on PATH that starts a child and sleeps: nothing in a real
    repository gets past the checks that would make the real git block."""
    repo = command_repo(tmp_path)
    bin_dir, pids = tmp_path / "stall-bin", tmp_path / "pids"
    bin_dir.mkdir()
    stand_in = bin_dir / "git"
    stand_in.write_text(f"#!/bin/sh\nsleep 300 &\necho $$ $! > {pids}\nsleep 300\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    answer = GitReader(repo.root, limits=_limits(timeout=1.0)).log()
    assert not answer.ok and answer.text == "git took longer than 1 s: stopped"
    # SIGKILL reaches the whole group at once, but the orphaned child dies when it is next
    # scheduled: on a loaded machine that can be after git's answer. A child the kill missed
    # would sleep on for 300 s, so a few seconds' grace still tells the two apart.
    started = [int(pid) for pid in pids.read_text().split()]
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [_alive(pid) for pid in started] == [False, False]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_output_beyond_the_cap_is_stopped_with_a_sentence(tmp_path: Path):
    target = tmp_path / "target"
    target.mkdir()
    git(target, "init", "-q", "-b", "main")
    (target / "big.txt").write_text("".join(f"line {n}\n" for n in range(5000)))
    git(target, "add", "-A")
    git(target, "commit", "-qm", "big")
    answer = GitReader(target, limits=_limits(max_output_bytes=2000)).show("HEAD")
    assert not answer.ok and "printed more than 2000 bytes" in answer.text


def _limits(**changes: Any):
    from runs.engine.target.gitsession import GitLimits

    return GitLimits(**changes)
