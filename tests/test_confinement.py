"""Confinement: hard links, loops, odd names and hostile arguments are tool errors, never crashes;
the target is checked again at every use and a moved or swapped one is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devtools.testing import ROOT
from runs.engine.storable import storable
from runs.engine.target.confinement import (
    Confinement,
    Refused,
    TargetChanged,
    open_target,
    printable,
    target_identity,
)
from runs.engine.target.tools import ReadOnlyTools

SECRET = "sk-live-HARDLINK-9191"
OUTSIDE = "OUTSIDE-BYTES-5151"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "target"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hello')\n")
    (root / ".env").write_text(f"TOKEN={SECRET}\n")
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{OUTSIDE}\n")
    os.link(root / ".env", root / "innocent.txt")
    os.link(outside, root / "notes.md")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "self_loop").symlink_to("self_loop")
    os.mkfifo(root / "pipe.py")
    return root


def record(root: Path) -> SimpleNamespace:
    return SimpleNamespace(
        target=str(root), target_real_path=str(root), target_identity=target_identity(root)
    )


def call(root: Path, name: str, args: Any) -> Any:
    return ReadOnlyTools(root).call(name, args if isinstance(args, str) else json.dumps(args))


@pytest.mark.parametrize("name", ["innocent.txt", "notes.md"])
def test_a_hard_linked_file_is_refused_with_the_reason(tree: Path, name: str):
    """A second name for .env, or for a file outside the target, shows nothing."""
    result = call(tree, "read_file", {"path": name})
    assert not result.ok
    assert "hard links" in result.content and "not read" in result.content
    assert SECRET not in result.content and OUTSIDE not in result.content
    grep = call(tree, "grep", {"pattern": "TOKEN|OUTSIDE"})
    assert SECRET not in grep.content and OUTSIDE not in grep.content
    info = call(tree, "file_info", {"path": name})
    assert "hard links" in info.content and OUTSIDE not in info.content


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("read_file", {"path": "loop_a"}),
        ("read_file", {"path": "self_loop/x"}),
        ("file_info", {"path": "loop_b"}),
        ("list_dir", {"path": "loop_a"}),
        ("grep", {"pattern": "x", "path": "loop_a"}),
        ("read_file", {"path": "pipe.py"}),
        ("read_file", {"path": "src"}),
        ("read_file", {"path": "src/app.py", "start_line": 10**30}),
        ("read_file", "{" + '"path": "src/app.py", "start_line": ' + "9" * 5000 + "}"),
        ("read_file", "[" * 50_000 + "]" * 50_000),
        ("read_file", '{"path": ' + "[" * 30_000 + "]" * 30_000 + "}"),
        ("read_file", {"path": "a" * 100_000}),
        ("read_file", {"path": "src/\udcff.py"}),
        ("read_file", {"path": "src/\x1b[31m.py"}),
        ("read_file", {"path": 12}),
        ("grep", {"pattern": "(?<=x)y"}),
        ("grep", {"pattern": "\ud800"}),
        ("grep", {"pattern": r"(a)\1"}),
        ("glob", {"pattern": ""}),
        ("list_dir", {"path": ".", "depth": 10**100}),
        ("no_such_tool", {"path": "."}),
    ],
)
def test_hostile_arguments_and_odd_files_come_back_as_tool_errors(tree: Path, name: str, args: Any):
    """Loops, FIFOs, huge numbers, deep JSON, bad names: an error the model reads, no raise."""
    result = call(tree, name, args)
    assert not result.ok, result.content
    assert result.content.strip() and len(result.content) < 2000
    assert "Traceback" not in result.content
    assert storable(result.content) == result.content, "safe to store as it is"


def test_file_info_of_a_fifo_answers_without_blocking(tree: Path):
    result = call(tree, "file_info", {"path": "pipe.py"})
    assert result.ok and "type: special" in result.content


def test_a_symlink_loop_is_named_as_one(tree: Path):
    result = call(tree, "read_file", {"path": "loop_a"})
    assert "symlink loop" in result.content and "loop_a" in result.content


def test_names_that_are_not_utf8_or_hold_control_bytes_are_shown_escaped(tree: Path):
    """They list and grep fine; what reaches the model and storage has no raw control byte."""
    odd = os.fsencode(tree / "src") + b"/bad\xff\x1b[2Jname.py"
    with open(odd, "wb") as handle:
        handle.write(b"needle = 1\n")
    listing = call(tree, "list_dir", {"path": "src"})
    grep = call(tree, "grep", {"pattern": "needle", "glob": "**/*.py"})
    glob = call(tree, "glob", {"pattern": "src/*name.py"})
    for result in (listing, grep, glob):
        assert result.ok
        assert "\\xff" in result.content and "\\x1b" in result.content
        assert "\x1b" not in result.content
        assert storable(result.content) == result.content
    assert printable("a\udcffb\x00c") == "a\\xffb\\x00c"


def test_open_target_accepts_the_directory_launched_on(tree: Path):
    confinement = open_target(record(tree))
    assert confinement.root == tree.resolve()
    confinement.verify()


def test_open_target_refuses_a_moved_target(tree: Path):
    launched = record(tree)
    tree.rename(tree.with_name("moved"))
    with pytest.raises(TargetChanged, match="is gone"):
        open_target(launched)


def test_open_target_refuses_a_target_replaced_by_a_link(tree: Path, tmp_path: Path):
    """The issue's attack: the target became a link to / before a retry."""
    launched = record(tree)
    tree.rename(tree.with_name("moved"))
    tree.symlink_to("/")
    with pytest.raises(TargetChanged, match="now leads to /"):
        open_target(launched)


def test_open_target_refuses_another_directory_at_the_same_path(tree: Path):
    launched = record(tree)
    shutil.move(tree, tree.with_name("moved"))
    tree.mkdir()
    with pytest.raises(TargetChanged, match="replaced by another directory"):
        open_target(launched)


def test_open_target_refuses_a_target_no_longer_under_the_allowed_roots(tree: Path, settings):
    launched = record(tree)
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [Path("/nonexistent-root")]
    with pytest.raises(TargetChanged, match="ORCHESTRATOR_ALLOWED_ROOTS"):
        open_target(launched)


def test_a_run_from_before_the_identity_was_recorded_is_checked_by_path(tree: Path):
    legacy = SimpleNamespace(target=str(tree), target_real_path="", target_identity="")
    assert open_target(legacy).root == tree.resolve()


def test_a_target_swapped_while_tools_run_stops_them(tree: Path):
    """Each call checks the root again: after a swap the next call reads nothing."""
    toolbox = ReadOnlyTools(tree)
    assert toolbox.call("read_file", {"path": "src/app.py"}).ok
    tree.rename(tree.with_name("moved"))
    tree.symlink_to("/etc")
    result = toolbox.call("read_file", {"path": "passwd"})
    assert not result.ok and "moved or replaced" in result.content
    assert "root:" not in result.content
    with pytest.raises(TargetChanged):
        toolbox.confine.verify()


def test_confinement_refuses_absolute_parent_and_escaping_paths(tree: Path):
    confine = Confinement(tree)
    for raw in ("/etc/passwd", "../outside.txt", "src/../../outside.txt", "~/x", "C:/x"):
        with pytest.raises(Refused):
            confine.resolve(raw)


def test_unreadable_files_and_folders_are_tool_errors_naming_the_path(tmp_path: Path):
    """Permission errors, checked for real: the tools run in a process without root's
    permission override (setpriv drops it), against a file and a folder with mode 000."""
    root = tmp_path / "locked"
    (root / "closed").mkdir(parents=True)
    (root / "closed" / "inner.py").write_text("x = 1\n")
    (root / "locked.py").write_text("SECRET = 1\n")
    (root / "locked.py").chmod(0)
    (root / "closed").chmod(0)
    script = (
        "import json, sys\n"
        "from runs.engine.target.tools import ReadOnlyTools\n"
        "tools = ReadOnlyTools(sys.argv[1])\n"
        "calls = [('read_file', {'path': 'locked.py'}), ('read_file', {'path': 'closed/inner.py'}),"
        " ('list_dir', {'path': 'closed'}), ('grep', {'pattern': 'SECRET|x'}),"
        " ('file_info', {'path': 'locked.py'})]\n"
        "print(json.dumps([tools.call(n, a).__dict__ for n, a in calls]))\n"
    )
    drop = ["--bounding-set=-dac_override,-dac_read_search"]
    prefix = ["setpriv", *drop, "--inh-caps=-dac_override,-dac_read_search"]
    try:
        done = subprocess.run(
            [*(prefix if os.geteuid() == 0 else []), sys.executable, "-c", script, str(root)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        (root / "closed").chmod(0o755)
    read, inner, listing, grep, info = json.loads(done.stdout)
    assert not read["ok"] and "locked.py: cannot open (Permission denied)" in read["content"]
    assert not inner["ok"] and "closed/inner.py: permission denied" in inner["content"]
    assert listing["ok"] and listing["content"] == "(empty)"
    assert grep["ok"] and "SECRET" not in grep["content"]
    assert info["ok"] and "Permission denied" in info["content"]


@pytest.mark.django_db
def test_a_launch_records_the_targets_real_path_and_identity(target_dir: Path):
    from runs.services import launch_run

    run = launch_run(flow="research", target=str(target_dir / ".." / target_dir.name))
    assert run.target_real_path == str(target_dir.resolve())
    assert run.target_identity == target_identity(target_dir)
    assert open_target(run).root == target_dir.resolve()
