"""The read-only tools: confined to the target, secrets never shown, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from runs.engine.target.tools import READ_ONLY_TOOLS, ReadOnlyTools, ToolLimits

TOKEN = "sk-live-THIS-MUST-NEVER-LEAK-4242"
OUTSIDE = "OUTSIDE-THE-TARGET-CONTENT-7373"
KEY_BODY = "MIIEowIBAAKCAQEAsecretkeymaterial"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A target with ordinary code and every kind of trap around it."""
    root = tmp_path / "target"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("import os\n\n\ndef main():\n    return 42  # TODO tidy\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    pass\n")
    (root / "README.md").write_text("# Target\n")
    (root / ".env").write_text(f"API_TOKEN={TOKEN}\n")
    (root / ".env.production").write_text(f"API_TOKEN={TOKEN}\n")
    (root / ".env.example").write_text("API_TOKEN=changeme\n")
    (root / "id_rsa").write_text(f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n")
    (root / "id_rsa.pub").write_text("ssh-rsa AAAA user@host\n")
    (root / "deploy.pem").write_text(f"{KEY_BODY}\n")
    (root / "notes.txt").write_text(
        f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
    )
    (root / ".ssh").mkdir()
    (root / ".ssh" / "config").write_text(f"IdentityFile {TOKEN}\n")
    (root / "credentials-prod.json").write_text(json.dumps({"token": TOKEN}))
    (root / "image.bin").write_bytes(b"\x89PNG\x00\x00" + TOKEN.encode())
    (root / "huge.log").write_text("x" * 5_000_000)
    os.mkfifo(root / "pipe")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text(f"VALUE = '{OUTSIDE}'\n")
    (root / "escape_link.py").symlink_to(outside / "secret.py")
    (root / "escape_dir").symlink_to(outside)
    (root / "passwd_link").symlink_to("/etc/passwd")
    (root / "proc_link").symlink_to("/proc/self/environ")
    (root / "dev_link").symlink_to("/dev/zero")
    (root / "inside_link.py").symlink_to(root / "src" / "app.py")
    return root


@pytest.fixture
def toolbox(tree: Path) -> ReadOnlyTools:
    return ReadOnlyTools(tree)


ESCAPES = [
    ("read_file", {"path": "../outside/secret.py"}),
    ("read_file", {"path": "src/../../outside/secret.py"}),
    ("read_file", {"path": str(Path("/etc/passwd"))}),
    ("read_file", {"path": "/proc/self/environ"}),
    ("read_file", {"path": "~/.bashrc"}),
    ("read_file", {"path": "escape_link.py"}),
    ("read_file", {"path": "escape_dir/secret.py"}),
    ("read_file", {"path": "passwd_link"}),
    ("read_file", {"path": "proc_link"}),
    ("read_file", {"path": "dev_link"}),
    ("read_file", {"path": "pipe"}),
    ("read_file", {"path": "src/app.py\x00../../outside/secret.py"}),
    ("read_file", {"path": ".env"}),
    ("read_file", {"path": ".env.production"}),
    ("read_file", {"path": "id_rsa"}),
    ("read_file", {"path": "deploy.pem"}),
    ("read_file", {"path": "notes.txt"}),
    ("read_file", {"path": ".ssh/config"}),
    ("read_file", {"path": "credentials-prod.json"}),
    ("read_file", {"path": "image.bin"}),
    ("read_file", {"path": "huge.log"}),
    ("list_dir", {"path": ".."}),
    ("list_dir", {"path": "/"}),
    ("list_dir", {"path": "escape_dir"}),
    ("grep", {"pattern": "OUTSIDE|sk-live|MIIE", "path": "."}),
    ("grep", {"pattern": ".", "path": "escape_dir"}),
    ("grep", {"pattern": ".", "path": "/etc"}),
    ("grep", {"pattern": ".", "path": "../outside"}),
    ("glob", {"pattern": "../outside/*"}),
    ("glob", {"pattern": "**/*secret*"}),
    ("glob", {"pattern": "/etc/*"}),
    ("file_info", {"path": "../outside/secret.py"}),
    ("file_info", {"path": ".env"}),
    ("write_file", {"path": "x.py", "content": "pwned"}),
    ("bash", {"command": f"cat ../outside/secret.py > {OUTSIDE}"}),
    ("git_show", {"rev": "HEAD", "path": "../outside/secret.py"}),
]


@pytest.mark.parametrize(("name", "args"), ESCAPES, ids=[f"{n}:{a}" for n, a in ESCAPES])
def test_no_byte_from_outside_the_target_or_from_a_secret_reaches_the_model(
    toolbox: ReadOnlyTools, tree: Path, name: str, args: dict[str, str]
):
    """Escapes, secrets, special files and write tools all come back empty-handed."""
    before = sorted(p.name for p in tree.iterdir())
    result = toolbox.call(name, json.dumps(args))
    for leaked in (TOKEN, OUTSIDE, KEY_BODY, "root:x:0:0", "PATH="):
        assert leaked not in result.content, (name, args, result.content)
    assert sorted(p.name for p in tree.iterdir()) == before, "nothing is ever written"


def test_there_are_at_least_thirty_escape_attempts():
    """The suite above is the toolbox's contract; keep it broad."""
    print(f"{len(ESCAPES)} escape attempts covered")
    assert len(ESCAPES) >= 30


def test_a_tool_outside_the_read_only_set_is_refused_and_never_runs(toolbox: ReadOnlyTools):
    """The model cannot talk its way into a write tool."""
    result = toolbox.call("write_file", {"path": "x", "content": "y"})
    assert not result.ok
    assert "read-only" in result.content and "read_file" in result.content
    assert "write_file" not in READ_ONLY_TOOLS


def test_read_file_numbers_lines_so_the_model_can_cite_them(toolbox: ReadOnlyTools):
    """`cat -n` style, with a header naming the range."""
    result = toolbox.call("read_file", '{"path": "src/app.py", "start_line": 4, "end_line": 5}')
    assert result.ok
    assert result.content.splitlines() == [
        "src/app.py (lines 4-5 of 5)",
        "     4\tdef main():",
        "     5\t    return 42  # TODO tidy",
    ]
    assert result.summary == "read_file src/app.py:4-5"


def test_a_symlink_that_stays_inside_the_target_is_fine(toolbox: ReadOnlyTools):
    """Links are judged by where they lead."""
    assert toolbox.call("read_file", {"path": "inside_link.py"}).ok


def test_grep_prints_path_line_text_and_skips_secrets_and_binaries(toolbox: ReadOnlyTools):
    """Matches are citable; secrets and binaries are silently skipped."""
    result = toolbox.call("grep", {"pattern": "TODO|API_TOKEN|PNG"})
    assert result.ok
    assert "src/app.py:5:return 42  # TODO tidy" in result.content
    assert ".env.example:1:API_TOKEN=changeme" in result.content
    assert ".env:" not in result.content.replace(".env.example", "")
    assert "image.bin" not in result.content


def test_an_invalid_regex_and_bad_arguments_get_clear_errors(toolbox: ReadOnlyTools):
    """Never a traceback, always a sentence the model can act on."""
    assert "invalid regular expression" in toolbox.call("grep", {"pattern": "("}).content
    assert "bad arguments for read_file" in toolbox.call("read_file", "{not json").content
    assert "bad arguments for read_file" in toolbox.call("read_file", {"nope": 1}).content
    assert "bad arguments for list_dir" in toolbox.call("list_dir", {"depth": 9}).content


def test_list_dir_marks_secrets_and_does_not_follow_links_out(toolbox: ReadOnlyTools):
    """The model may see that a secret file exists, never its name or what is in it."""
    result = toolbox.call("list_dir", {"path": ".", "depth": 2})
    assert "src/pkg/" in result.content
    assert "[secret file]  [not readable]" in result.content
    assert ".env.example  (19 bytes)" in result.content
    names = [line.split("  ")[0] for line in result.content.splitlines()]
    assert ".env" not in names and ".env.production" not in names and "id_rsa" not in names
    assert "escape_dir" not in result.content
    assert "README.md  (9 bytes)" in result.content


def test_glob_finds_files_by_pattern_inside_the_target(toolbox: ReadOnlyTools):
    """`**` spans directories."""
    result = toolbox.call("glob", {"pattern": "**/*.py"})
    assert set(result.content.splitlines()) >= {"src/app.py", "src/pkg/util.py"}
    assert "secret.py" not in result.content


def test_output_is_capped_with_a_visible_marker(tree: Path):
    """A flood of output is cut, and the cut is announced."""
    small = ReadOnlyTools(tree, limits=ToolLimits(max_output_chars=50))
    result = small.call("list_dir", {"path": ".", "depth": 3})
    assert "[truncated:" in result.content


def test_a_large_file_can_be_read_by_line_range(tree: Path):
    """Whole-file reads of big files are refused; a range works."""
    (tree / "big.py").write_text("line\n" * 200_000)
    toolbox = ReadOnlyTools(tree)
    assert "too large" in toolbox.call("read_file", {"path": "big.py"}).content
    ranged = toolbox.call("read_file", {"path": "big.py", "start_line": 10, "end_line": 12})
    assert ranged.ok and "(lines 10-12 of 200000)" in ranged.content


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=T", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "main.py").write_text("print('v1')\n")
    (root / "sub" / "inner.py").write_text("x = 1\n")
    (root / ".env").write_text(f"T={TOKEN}\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first commit")
    (root / "main.py").write_text("print('v2')\n")
    git(root, "commit", "-qam", "second commit")
    return root


def test_git_tools_read_history_at_the_top_of_a_repository(repo: Path):
    """log, show, blame and diff, read-only."""
    toolbox = ReadOnlyTools(repo)
    assert "git_log" in [s["function"]["name"] for s in toolbox.specs()]
    assert "second commit" in toolbox.call("git_log", {}).content
    assert "print('v1')" in toolbox.call("git_show", {"rev": "HEAD~1", "path": "main.py"}).content
    assert "print('v2')" in toolbox.call("git_blame", {"path": "main.py"}).content
    assert "-print('v1')" in toolbox.call("git_diff", {"rev_from": "HEAD~1"}).content


def test_git_tools_refuse_secrets_and_option_injection(repo: Path):
    """`git show HEAD:.env` and revisions that look like options are refused."""
    toolbox = ReadOnlyTools(repo)
    assert TOKEN not in toolbox.call("git_show", {"rev": "HEAD", "path": ".env"}).content
    assert "not a revision" in toolbox.call("git_show", {"rev": "--output=/tmp/x"}).content
    first_commit = toolbox.call("git_show", {"rev": "HEAD~1"})
    assert first_commit.ok and "main.py" in first_commit.content
    assert TOKEN not in first_commit.content
    assert TOKEN not in toolbox.call("git_diff", {"rev_from": "HEAD~1", "rev_to": "HEAD"}).content


def test_git_tools_are_absent_when_the_target_is_a_subdirectory(repo: Path):
    """Otherwise git could show files of the repository outside the target."""
    toolbox = ReadOnlyTools(repo / "sub")
    assert "git_show" not in [s["function"]["name"] for s in toolbox.specs()]
    result = toolbox.call("git_show", {"rev": "HEAD", "path": "../main.py"})
    assert not result.ok and "print(" not in result.content
