"""The engine's reader for the citation checker: the tools' confinement and secret rules.

Citations are checked through runs.engine.report.reporting.ConfinedLines, which reads only what the
read-only tools may read. Secrets are flagged, never verified; links out of the target,
loops, FIFOs and a swapped target fail only the citations that touch them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flows.citations import CheckStatus, check_all
from runs.engine.report.reporting import ConfinedLines

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / "app").mkdir(parents=True)
    (root / "app" / "conf.d").mkdir()
    (root / "app" / "views.py").write_text("import os\n\n\ndef run(cmd):\n    return cmd\n")
    (root / ".env").write_text("SECRET_KEY=abc\n")
    (root / "config").mkdir()
    (root / "config" / "secrets.yml").write_text("token: abc\n")
    (root / "deploy_key.txt").write_text(PRIVATE_KEY)
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "outside.py").write_text("password = 1\n")
    (root / "escape.py").symlink_to(tmp_path / "outside.py")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    os.mkfifo(root / "pipe.py")
    return root.resolve()


def status(target: Path, text: str) -> CheckStatus:
    [check] = check_all(text, ConfinedLines(str(target)))
    return check.status


@pytest.mark.parametrize(
    ("cited", "expected"),
    [
        ("app/views.py:4", CheckStatus.LINES_EXIST),
        ("./app/views.py:4", CheckStatus.LINES_EXIST),
        ("app/views.py:40", CheckStatus.NO_SUCH_LINES),
        ("app/nope.py:1", CheckStatus.NO_SUCH_FILE),
        (".env:1", CheckStatus.SECRET),
        ("config/secrets.yml:1", CheckStatus.SECRET),
        ("deploy_key.txt:1", CheckStatus.SECRET),
        ("escape.py:1", CheckStatus.OUTSIDE_ROOT),
        ("../outside.py:1", CheckStatus.OUTSIDE_ROOT),
        ("app/../../outside.py:1", CheckStatus.OUTSIDE_ROOT),
        ("~/.ssh/config:1", CheckStatus.OUTSIDE_ROOT),
        ("/etc/passwd:1", CheckStatus.OUTSIDE_ROOT),
        ("loop_a/x.py:1", CheckStatus.UNREADABLE),
        ("pipe.py:1", CheckStatus.UNREADABLE),
        ("logo.png:1", CheckStatus.UNREADABLE),
        ("app/conf.d:1", CheckStatus.UNREADABLE),
    ],
)
def test_each_citation_gets_the_status_the_tools_rules_give_it(
    target: Path, cited: str, expected: CheckStatus
):
    """Secrets flagged, links out refused; loops, FIFOs, directories and binaries unreadable."""
    assert status(target, f"see `{cited}`") == expected


def test_absolute_paths_inside_the_target_are_read_as_the_relative_path_they_name(target: Path):
    assert status(target, f"`{target}/app/views.py:4`") == CheckStatus.LINES_EXIST
    assert status(target, f"`{target}/app/views.py:40`") == CheckStatus.NO_SUCH_LINES
    assert status(target, f"`{target}/.env:1`") == CheckStatus.SECRET
    assert status(target, f"`{target}/../outside.py:1`") == CheckStatus.OUTSIDE_ROOT
    assert status(target, f"`{target}-other/app/views.py:4`") == CheckStatus.OUTSIDE_ROOT


def test_a_loop_or_a_fifo_fails_only_its_own_citation(target: Path):
    """A hostile tree cannot stall or break the check of the other citations."""
    text = "`loop_a/x.py:1` `pipe.py:1` `app/views.py:1` `escape.py:1` `app/views.py:4`"
    checks = check_all(text, ConfinedLines(str(target)))
    assert [c.status for c in checks] == [
        CheckStatus.UNREADABLE,
        CheckStatus.UNREADABLE,
        CheckStatus.LINES_EXIST,
        CheckStatus.OUTSIDE_ROOT,
        CheckStatus.LINES_EXIST,
    ]


def test_a_target_swapped_for_a_link_is_never_read_through(target: Path, tmp_path: Path):
    """The run recorded the target's real path; a link put in its place fails every citation."""
    moved = tmp_path / "moved"
    target.rename(moved)
    target.symlink_to(tmp_path)  # now "shop" leads to its parent, where outside.py lives
    assert status(target, "`outside.py:1`") == CheckStatus.TARGET_UNAVAILABLE
    assert status(target, "`moved/app/views.py:4`") == CheckStatus.TARGET_UNAVAILABLE


def test_a_target_that_is_gone_fails_every_citation_without_raising(target: Path):
    missing = target.parent / "gone"
    assert status(missing, "`app/views.py:1`") == CheckStatus.TARGET_UNAVAILABLE


def test_a_file_too_large_to_check_is_flagged(target: Path):
    from runs.engine.report import reporting

    (target / "big.txt").write_text("x\n" * (reporting.MAX_CITED_FILE_BYTES // 2 + 1))
    assert status(target, "`big.txt:1`") == CheckStatus.UNREADABLE


def test_a_bare_name_resolves_only_to_a_file_the_reader_may_read(target: Path):
    """`views.py:4` finds app/views.py; a secret, a link out of the target or a name two
    files carry never resolves to something the tools could not show."""
    reader = ConfinedLines(str(target))
    [check] = check_all("`views.py:4` — `def run(cmd):`", reader)
    assert (check.status, check.resolved) == (CheckStatus.VERIFIED, "app/views.py")
    assert reader.files_named("secrets.yml") == []
    assert reader.files_named("outside.py") == []
    assert reader.files_named("escape.py") == []  # a link leading out is invisible
    (target / "lib").mkdir()
    (target / "lib" / "views.py").write_text("x = 1\n")
    [twice] = check_all("`views.py:1`", ConfinedLines(str(target)))
    assert twice.status == CheckStatus.AMBIGUOUS
    assert twice.reason.startswith("ambiguous: 2 files named views.py")
    [secret] = check_all("`secrets.yml:1`", ConfinedLines(str(target)))
    assert secret.status == CheckStatus.SECRET
