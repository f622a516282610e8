"""The read-only git module on ordinary repositories: what each answer holds, and its limits."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from runs.engine.target.gitread import GitReader, clean
from runs.engine.target.gitsession import GitFailed, GitLimits, check_revision
from runs.engine.target.tools import ReadOnlyTools
from tests.hostile_git import EMPTY_TREE, git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "main.py").write_text("print('v1')\n")
    (root / "pkg" / "util.py").write_text("def f():\n    return 1\n")
    (root / "gone.txt").write_text("to be deleted\n")
    (root / "mode.sh").write_text("echo hi\n")
    (root / "data.bin").write_bytes(b"\x00\x01\x02")
    (root / "link").symlink_to("main.py")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first commit")
    (root / "main.py").write_text("print('v2')\n")
    git(root, "commit", "-qam", "second commit")
    return root


def test_log_show_blame_and_diff_answer_from_history(repo: Path):
    reader = GitReader(repo)
    assert reader.available
    log = reader.log()
    assert log.ok and log.text.splitlines()[0].endswith("Dev: second commit")
    assert "first commit" in reader.log("pkg").text
    assert "second commit" not in reader.log("pkg").text
    show = reader.show("HEAD")
    assert show.ok and "-print('v1')" in show.text and "+print('v2')" in show.text
    assert "main.py | 2 +-" in show.text
    assert reader.show("HEAD~1", "main.py").text.endswith("print('v1')\n")
    assert "util.py" in reader.show("HEAD", "pkg").text
    blame = reader.blame("pkg/util.py", 2, 2)
    assert blame.ok and "lines 2-2" in blame.text and "return 1" in blame.text
    assert "def f" not in blame.text
    diff = reader.diff("HEAD~1", "HEAD")
    assert diff.ok and "+print('v2')" in diff.text
    assert reader.diff().text.endswith("(no differences)")


def test_the_working_tree_diff_covers_every_kind_of_change(repo: Path):
    """Edits, staged and deleted files, modes, links, binaries, large and special files."""
    (repo / "main.py").write_text("print('v3')\n")
    (repo / "new.py").write_text("added = True\n")
    git(repo, "add", "new.py")
    (repo / "gone.txt").unlink()
    (repo / "mode.sh").chmod(0o755)
    (repo / "link").unlink()
    (repo / "link").symlink_to("pkg/util.py")
    (repo / "data.bin").write_bytes(b"\x00\x09\x09")
    (repo / "pkg" / "util.py").unlink()
    os.mkfifo(repo / "pkg" / "util.py")
    text = GitReader(repo).diff().text
    assert "-print('v2')\n+print('v3')" in text
    assert "diff --git a/new.py b/new.py\nnew file mode 100644" in text
    assert "diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644" in text
    assert "old mode 100644\nnew mode 100755" in text
    assert "-main.py\n\\ No newline at end of file\n+pkg/util.py" in text
    assert "Binary files a/data.bin and b/data.bin differ" in text
    assert "[pkg/util.py: changed, not readable: not a regular file" in text
    small = GitReader(repo, limits=GitLimits(max_blob_bytes=5))
    assert "[main.py: changed, too large to show]" in small.diff(path="main.py").text


def test_a_path_narrows_every_answer(repo: Path):
    (repo / "main.py").write_text("print('v3')\n")
    (repo / "pkg" / "util.py").write_text("def f():\n    return 2\n")
    reader = GitReader(repo)
    only_pkg = reader.diff(path="pkg").text
    assert "return 2" in only_pkg and "v3" not in only_pkg
    assert "v3" not in reader.diff("HEAD~1", "HEAD", path="pkg").text
    assert "(no differences)" in reader.diff("HEAD~1", "HEAD", path="pkg").text


@pytest.mark.parametrize("name", ["-n.txt", ":(glob)x.txt", "a b.txt", "é.txt", "*.txt"])
def test_odd_file_names_are_literal(repo: Path, name: str):
    """Leading dashes, pathspec magic, spaces, non-ASCII and globs are just names."""
    (repo / name).write_text("odd\n")
    (repo / "plain.txt").write_text("plain\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "odd names")
    (repo / name).write_text("odd changed\n")
    reader = GitReader(repo)
    assert "odd names" in reader.log(name).text
    assert reader.show("HEAD", name).text.endswith("odd\n")
    assert "odd" in reader.blame(name).text
    diff = reader.diff(path=name).text
    assert "+odd changed" in diff and "plain" not in diff


def test_sha256_repositories_are_read(tmp_path: Path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main", "--object-format=sha256")
    (root / "a.txt").write_text("one\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "in sha256")
    (root / "a.txt").write_text("two\n")
    reader = GitReader(root)
    assert "in sha256" in reader.log().text
    assert "+two" in reader.diff().text
    assert "one" in reader.blame("a.txt").text


def test_packed_refs_tags_and_shallow_clones_are_read(repo: Path, tmp_path: Path):
    git(repo, "tag", "v1.0", "HEAD~1")
    git(repo, "pack-refs", "--all")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    reader = GitReader(repo)
    assert "print('v1')" in reader.show("v1.0", "main.py").text
    assert reader.diff("v1.0", "main").ok
    shallow = GitReader(clone)
    assert shallow.log().ok and "second commit" in shallow.log().text
    assert shallow.show("HEAD").ok


def test_a_merge_commit_is_shown(repo: Path):
    git(repo, "checkout", "-q", "-b", "side")
    (repo / "side.py").write_text("side = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "side work")
    git(repo, "checkout", "-q", "main")
    (repo / "pkg" / "util.py").write_text("def f():\n    return 3\n")
    git(repo, "commit", "-qam", "main work")
    git(repo, "merge", "-q", "--no-edit", "side")
    show = GitReader(repo).show("HEAD")
    assert show.ok and "Merge:" in show.text


def test_an_empty_repository_and_a_missing_git_say_so(tmp_path: Path):
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    reader = GitReader(root)
    assert reader.log().text == "the repository has no commits yet"
    shutil.rmtree(root / ".git")
    assert "no .git" in reader.log().text
    sandbox = ReadOnlyTools(root)
    assert not sandbox.has_git
    assert "no .git at its top" in sandbox.call("git_log", {}).content


def test_a_large_commit_names_what_it_leaves_out(repo: Path):
    for n in range(12):
        (repo / f"f{n:02d}.txt").write_text(f"{n}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "many files")
    show = GitReader(repo, limits=GitLimits(max_patch_files=5)).show("HEAD")
    assert show.ok and "f04.txt" in show.text and "f05.txt" not in show.text
    assert "[7 more changed files not shown; pass a path]" in show.text


def test_blame_limits_are_sentences(repo: Path):
    reader = GitReader(repo)
    assert reader.blame("pkg/util.py", 9).text == "pkg/util.py has only 2 lines at HEAD"
    assert "not a file at HEAD" in reader.blame("pkg").text
    assert "binary file" in reader.blame("data.bin").text
    assert "not a file at HEAD" in reader.blame("nothing.py").text


@pytest.mark.parametrize(
    "rev", ["HEAD", "HEAD~1", "HEAD^", "HEAD^2", "main", "v1.0", "@", "a1b2c3d"]
)
def test_plain_revisions_are_accepted(rev: str):
    assert check_revision(rev) == rev


def test_revision_errors_are_sentences(repo: Path):
    reader = GitReader(repo)
    assert reader.show("nope").text == "no revision 'nope' in this repository"
    assert reader.show(EMPTY_TREE).text.endswith("names a tree, not a commit")
    assert reader.show("HEAD~9").text == "no revision 'HEAD~9' in this repository"
    with pytest.raises(GitFailed):
        check_revision("--all")


def test_clean_redacts_every_key_armour_and_url_credentials():
    text = (
        "a\n-----BEGIN EC PRIVATE KEY-----\nSECRETA\n-----END EC PRIVATE KEY-----\n"
        "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRETB\n-----END OPENSSH PRIVATE KEY-----\n"
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nSECRETC\n-----END PGP PRIVATE KEY BLOCK-----\n"
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nSECRETD\n"
    )
    assert "SECRET" not in clean(text) and clean(text).startswith("a\n[private key redacted]")
    putty = "PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\nSECRETE\nPrivate-MAC: ab\nok"
    assert clean(putty) == "[private key redacted]\n" * 4 + "ok"  # line for line
    urls = "https://me:SECRETF@h.example/x ssh://ghp_0123456789abcdefSECRETG@h ssh://git@h.example"
    assert clean(urls) == ("https://[redacted]@h.example/x ssh://[redacted]@h ssh://git@h.example")
    assert clean("bell\x07 esc\x1b[31m crlf\r\n") == "bell\u2407 esc\u241b[31m crlf\n"
    # The one secret rule (runs/engine/target/secrets.py): any case, age keys too.
    other = "x AGE-SECRET-KEY-1" + "Q" * 58 + " y -----begin rsa private key-----\nSECRETH"
    assert (
        clean(other) == "x [private key redacted] y [private key redacted]\n[private key redacted]"
    )


@pytest.mark.parametrize(
    "key",
    [
        "-----begin rsa private key-----\nSECRETK\n-----end rsa private key-----\n",
        "AGE-SECRET-KEY-1" + "Q" * 58 + "\nSECRETK\n",
    ],
    ids=["lowercase-pem", "age"],
)
def test_a_committed_key_in_any_armour_is_left_out_of_show_and_diff(repo: Path, key: str):
    """The one key rule (secrets.KEY_START_ERE) finds the files git must not show."""
    (repo / "notes.txt").write_text(f"keep\n{key}")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-qm", "a key")
    reader = GitReader(repo)
    for answer in (reader.show("HEAD"), reader.diff("HEAD~1", "HEAD")):
        assert answer.ok and "SECRETK" not in answer.text
        assert "private-key file: notes.txt" in answer.text


def test_answers_are_plain_data_and_never_raise(repo: Path):
    """Even a target whose repository vanished mid-run gets a sentence."""
    reader = GitReader(repo)
    shutil.rmtree(repo / ".git" / "objects")
    for answer in (reader.log(), reader.show("HEAD"), reader.blame("main.py"), reader.diff()):
        assert not answer.ok and answer.text
        json.dumps({"ok": answer.ok, "text": answer.text})
