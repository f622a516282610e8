"""Read-only git for the agents' tools: log, show, blame and diff of a target repository.

Nothing the repository configures can run: git only ever sees the shadow directory of
`gitlayout` (our configuration, the refs, the object store), in a killable process with a clean
environment (`gitsession`), and working-tree files are read by this process (`gitworktree`).
Every answer is a sentence or a text with secret files left out, private-key blocks and URL
credentials redacted and control bytes replaced; no method raises.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from runs.engine.storable import clean_text
from runs.engine.target.confinement import Confinement, Refused
from runs.engine.target.gitlayout import GitLayout, GitRefused, locate
from runs.engine.target.gitsession import GitFailed, GitLimits, GitSession
from runs.engine.target.gitworktree import Change, compare, index_files, tree_files, within
from runs.engine.target.secrets import (
    KEY_START_ERE,
    SECRET_NAME_SHOWN,
    is_secret_name,
    readable_contents,
    redact,
    redact_name,
    shown_name,
)

log = logging.getLogger(__name__)

NEW_OR_GONE = re.compile(r"^diff --git ([ab])/(\S+) \1/\2$", re.M)
BINARY_SNIFF = 8192


@dataclass(frozen=True, kw_only=True)
class GitAnswer:
    ok: bool
    text: str  # the answer, or one sentence saying why there is none


class GitReader:
    """The git history and working-tree changes of one target, read without running it."""

    def __init__(self, root: str | os.PathLike[str], *, limits: GitLimits | None = None) -> None:
        self.confine = Confinement(root)
        self.limits = limits or GitLimits()
        self.refusal = _refusal(self.confine)

    @property
    def available(self) -> bool:
        return self.refusal is None

    def log(self, path: str | None = None, max_count: int = 20) -> GitAnswer:
        return self._answer(lambda session: self._log(session, path, max_count))

    def show(self, rev: str, path: str | None = None) -> GitAnswer:
        if path is None:
            return self._answer(lambda session: self._show_commit(session, rev))
        return self._answer(lambda session: self._show_file(session, rev, path))

    def blame(self, path: str, start_line: int = 1, end_line: int | None = None) -> GitAnswer:
        return self._answer(lambda session: self._blame(session, path, start_line, end_line))

    def diff(
        self, rev_from: str = "HEAD", rev_to: str | None = None, path: str | None = None
    ) -> GitAnswer:
        if rev_to is None:
            return self._answer(lambda session: self._diff_worktree(session, rev_from, path))
        return self._answer(lambda session: self._diff_revisions(session, rev_from, rev_to, path))

    # --- the four answers ----------------------------------------------------------------

    def _log(self, session: GitSession, path: str | None, max_count: int) -> str:
        scope = self._history_path(path) if path else "."
        head = self._head(session)
        count = max(1, min(int(max_count), 1000))
        args = ["log", f"--max-count={count}", "--format=%h %ad %an: %s", "--date=short", head]
        out = session.check(*args, *_pathspecs([scope]))
        return _text(out) or f"(no commits touch {scope})"

    def _show_commit(self, session: GitSession, rev: str) -> str:
        commit = session.resolve(rev, "commit")
        changed = _names(
            session.check(
                "diff-tree", "-r", "-z", "--name-only", "--no-commit-id", "--root", "-m", commit
            )
        )
        trees = [f"{commit}^{{tree}}", *self._parents(session, commit)]
        shown, notes = self._visible(session, changed, trees)
        args = ["show", "--no-ext-diff", "--no-textconv", "--format=medium", "--no-color"]
        if shown:
            out = session.check(*args, "--stat", "--patch", commit, *_pathspecs(shown))
        else:
            out = session.check(*args, "--no-patch", commit)
        return "\n".join([_text(out).rstrip("\n"), *notes])

    def _show_file(self, session: GitSession, rev: str, path: str) -> str:
        rel = self._history_path(path, whole_tree=False)
        tree = session.snapshot(rev)
        code, out, _ = session.run("rev-parse", "--verify", "--quiet", f"{tree}:{rel}")
        oid = out.decode("ascii", "replace").strip()
        if code != 0 or not oid:
            raise GitFailed(f"{rel} does not exist at {rev}")
        kind = session.object_type(oid)
        if kind == "tree":
            listing = session.check("ls-tree", "-z", "--name-only", oid)
            names = [
                f"{SECRET_NAME_SHOWN}  [not readable]"
                if _hidden(f"{rel}/{name}")
                else redact_name(name)
                for name in _names(listing)
            ]
            return f"{rel} is a directory at {rev}:\n" + "\n".join(names)
        if kind is None:
            raise GitFailed(f"{rel} at {rev}: its object is missing from the repository")
        if kind != "blob":
            return f"{rel} at {rev} is a submodule (a commit of another repository)"
        data = self._blob(session, oid, rel, rev)
        return f"{rel} at {rev}:\n{_text(data)}"

    def _blame(self, session: GitSession, path: str, start: int, end: int | None) -> str:
        rel = self._history_path(path, whole_tree=False)
        head = self._head(session)
        code, out, _ = session.run("rev-parse", "--verify", "--quiet", f"{head}:{rel}")
        oid = out.decode("ascii", "replace").strip()
        if code != 0 or session.object_type(oid) != "blob":
            raise GitFailed(f"{rel} is not a file at HEAD: git_blame reads committed files")
        shown = self._blob(session, oid, rel, "HEAD")
        lines = shown.count(b"\n") or 1
        if start > lines:
            raise GitFailed(f"{rel} has only {lines} lines at HEAD")
        last = min(end or lines, lines)
        if last < start:
            raise GitFailed("end_line is before start_line")
        out = session.check("blame", "--date=short", "-L", f"{start},{last}", head, "--", rel)
        blamed = _blame_redacted(_text(out), session.blobs([oid]).get(oid, b""), shown, start)
        return f"{rel} at HEAD ({head[:12]}), lines {start}-{last}:\n{blamed}"

    def _diff_revisions(
        self, session: GitSession, rev_from: str, rev_to: str, path: str | None
    ) -> str:
        scope = self._history_path(path) if path else "."
        old, new = session.snapshot(rev_from), session.snapshot(rev_to)
        changed = _names(
            session.check("diff-tree", "-r", "-z", "--name-only", old, new, *_pathspecs([scope]))
        )
        shown, notes = self._visible(session, changed, [old, new])
        if not shown:
            return "\n".join(["(no differences)", *notes])
        out = session.check("diff", "--no-ext-diff", "--no-textconv", old, new, *_pathspecs(shown))
        return "\n".join([_text(out).rstrip("\n") or "(no differences)", *notes])

    def _diff_worktree(self, session: GitSession, rev_from: str, path: str | None) -> str:
        scope = self._history_path(path) if path else "."
        base = tree_files(session, session.snapshot(rev_from))
        index = index_files(session)
        tracked = sorted(p for p in base.keys() | index.keys() if within(p, scope))
        secret = {p for p in tracked if _hidden(p)}
        visible = [p for p in tracked if p not in secret]
        notes = _hidden_note(sorted(secret), "secret")
        found = compare(
            session,
            self.confine,
            base,
            visible,
            max_file_bytes=self.limits.max_blob_bytes,
            index=index,
        )
        if found.stopped:
            notes.append(
                f"[stopped after comparing {found.compared} files: {found.stopped}; "
                "pass a path to narrow the comparison]"
            )
        header = f"{rev_from} against the working tree (files compared as stored, no filters):"
        if not found.changes:
            return "\n".join([header, "(no differences)", *notes])
        patch, more = self._worktree_patch(session, found.changes)
        return "\n".join([header, *filter(None, [patch.rstrip("\n")]), *more, *notes])

    # --- helpers -------------------------------------------------------------------------

    def _answer(self, work: Callable[[GitSession], str]) -> GitAnswer:
        """Run one answer in a fresh session; every failure becomes a sentence."""
        try:
            layout = _layout(self.confine)
            deadline = time.monotonic() + self.limits.timeout
            with GitSession(layout, self.limits, deadline) as session:
                text = work(session)
        except (GitRefused, GitFailed, Refused) as exc:
            return GitAnswer(ok=False, text=clean(str(exc)))
        except Exception as exc:  # a tool never raises: the agent reads what went wrong
            log.warning("git read failed in %s", self.confine.root, exc_info=True)
            return GitAnswer(ok=False, text=f"git could not answer ({exc.__class__.__name__})")
        return GitAnswer(ok=True, text=clean(text))

    def _history_path(self, raw: str | None, *, whole_tree: bool = True) -> str:
        """A repository path an agent named: inside the target, not secret, lexically normal."""
        real = self.confine.resolve(raw)
        text = (raw or "").strip() or "."
        lexical = posixpath.normpath(text)
        if lexical == ".." or lexical.startswith("../"):
            raise Refused(f"{raw!r} is outside the target")
        if lexical == ".":
            if not whole_tree:
                raise Refused("name a file, not the whole tree")
            return lexical
        for candidate in (lexical, self.confine.relative(real)):
            if _hidden(candidate):
                raise Refused(f"{candidate}: secret file, not shown")
        return lexical

    def _head(self, session: GitSession) -> str:
        code, out, _ = session.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        if code != 0:
            raise GitFailed("the repository has no commits yet")
        return out.decode("ascii", "replace").strip()

    def _parents(self, session: GitSession, commit: str) -> list[str]:
        out = session.check("rev-list", "--parents", "--max-count=1", commit)
        return [f"{parent}^{{tree}}" for parent in out.decode("ascii", "replace").split()[1:]]

    def _visible(
        self, session: GitSession, paths: list[str], trees: list[str]
    ) -> tuple[list[str], list[str]]:
        """The paths a patch may show, and notes for those it may not."""
        secret = [p for p in paths if _hidden(p)]
        hidden = set(secret)
        shown = [p for p in paths if p not in hidden]
        keyed = self._holding_keys(session, shown, trees)
        shown = [p for p in shown if p not in keyed]
        notes = _hidden_note(secret, "secret") + _hidden_note(sorted(keyed), "private-key")
        limit = self.limits.max_patch_files
        if len(shown) > limit:
            notes.append(f"[{len(shown) - limit} more changed files not shown; pass a path]")
        return shown[:limit], notes

    def _holding_keys(self, session: GitSession, paths: list[str], trees: list[str]) -> set[str]:
        """Which of `paths` hold a private key in any of `trees` (a partial hunk would leak)."""
        if not paths:
            return set()
        spec = _pathspecs(paths[: self.limits.max_patch_files])
        code, out, _ = session.run(
            "grep", "-l", "-z", "-I", "-i", "-E", "-e", KEY_START_ERE, *trees, *spec
        )
        if code not in (0, 1):
            raise GitFailed("the changed files could not be checked for private keys")
        found = set()
        for name in _names(out):
            found.add(name.split(":", 1)[1] if ":" in name else name)
        return found

    def _blob(self, session: GitSession, oid: str, rel: str, rev: str) -> bytes:
        size = session.sizes([oid]).get(oid, 0)
        if size > self.limits.max_blob_bytes:
            raise GitFailed(f"{rel} at {rev} is {size} bytes: too large to show")
        data = session.blobs([oid]).get(oid, b"")
        if b"\0" in data[:BINARY_SNIFF]:
            raise GitFailed(f"{rel} at {rev} is a binary file ({size} bytes): not shown")
        shown = readable_contents(data)
        if shown is None:
            raise GitFailed(f"{rel} at {rev} contains a private key: not shown")
        return shown

    def _worktree_patch(self, session: GitSession, changes: list[Change]) -> tuple[str, list[str]]:
        """A unified patch of changed tracked files, made by git from private copies."""
        limit = self.limits.max_patch_files
        notes = []
        if len(changes) > limit:
            notes.append(f"[{len(changes) - limit} more changed files not shown; pass a path]")
        olds = session.blobs([c.old.oid for c in changes[:limit] if c.old is not None])
        folder = session.scratch / "compare"
        (folder / "a").mkdir(parents=True)
        (folder / "b").mkdir()
        budget = self.limits.max_patch_bytes
        for change in changes[:limit]:
            old = olds.get(change.old.oid) if change.old is not None else None
            new = change.new.data
            budget -= len(old or b"") + len(new or b"")
            if change.kind == "not readable":
                notes.append(f"[{change.path}: changed, not readable: {change.new.note}]")
            elif change.new.state == "large" or (change.old is not None and old is None):
                notes.append(f"[{change.path}: changed, too large to show]")
            elif budget < 0:
                notes.append(f"[{change.path}: changed, not shown: the patch is already large]")
            elif _refused(old) or _refused(new):
                notes.append(f"[{change.path}: changed, holds a private key: not shown]")
            else:  # a key in ordinary code is compared redacted, line for line
                old, new = _readable(old), _readable(new)
                _place(folder / "a", change.path, old, change.old.mode if change.old else "")
                _place(folder / "b", change.path, new, change.new.mode)
        code, out, err = session.run(
            "diff",
            "--no-index",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--no-renames",
            "--no-prefix",
            "a",
            "b",
            cwd=folder,
        )
        if code not in (0, 1):
            raise GitFailed(f"git: {err.decode('utf-8', 'replace').strip()[:300]}")
        return NEW_OR_GONE.sub(r"diff --git a/\2 b/\2", _text(out)), notes


def clean(text: str) -> str:
    """Text safe to hand on: keys and URL credentials redacted (the one secret rule), control
    characters shown as symbols (the one storable-text rule)."""
    return clean_text(redact(text.replace("\r\n", "\n")))


def _refusal(confine: Confinement) -> str | None:
    try:
        _layout(confine)
    except GitRefused as exc:
        return str(exc)
    return None


def _layout(confine: Confinement) -> GitLayout:
    layout = locate(confine)
    if layout is None:
        raise GitRefused("the target has no .git at its top: git tools are not available")
    return layout


@functools.lru_cache(maxsize=65_536)
def _hidden(path: str) -> bool:
    """Secret files and git's own files never appear in an answer."""
    parts = PurePosixPath(path).parts
    return is_secret_name(path) or any(part.lower() == ".git" for part in parts)


def _hidden_note(paths: list[str], why: str) -> list[str]:
    if not paths:
        return []
    count = len(paths)
    if why == "secret":  # a secret file's name is not written out, only its folder
        paths = list(dict.fromkeys(shown_name(path) for path in paths))
    else:
        paths = [redact_name(path) for path in paths]
    named = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    plural = "files" if count > 1 else "file"
    return [f"[not shown: {count} {why} {plural}: {named}]"]


def _refused(data: bytes | None) -> bool:
    return data is not None and readable_contents(data) is None


def _readable(data: bytes | None) -> bytes | None:
    return None if data is None else readable_contents(data)


def _blame_redacted(text: str, original: bytes, shown: bytes, start: int) -> str:
    """Blame's lines with the content of every redacted line replaced as `_blob` shows it
    (git blames the stored bytes, so a key in ordinary code would otherwise pass)."""
    if original == shown:
        return text
    before = original.decode("utf-8", "replace").split("\n")
    after = shown.decode("utf-8", "replace").split("\n")
    lines = text.split("\n")
    for index, line in enumerate(lines):
        number = start - 1 + index
        if number >= len(before) or before[number] == after[number]:
            continue
        head = line[: len(line) - len(before[number])] if line.endswith(before[number]) else ""
        lines[index] = head + after[number] if head else after[number]
    return "\n".join(lines)


def _pathspecs(paths: Iterable[str]) -> list[str]:
    """Literal pathspecs (no globs or magic from an agent); none for the whole tree."""
    chosen = [p for p in paths if p != "."]
    return ["--", *(f":(top,literal){p}" for p in chosen)] if chosen else []


def _names(out: bytes) -> list[str]:
    seen: dict[str, None] = {}
    for name in out.split(b"\0"):
        if name:
            seen.setdefault(os.fsdecode(name))
    return list(seen)


def _place(folder: Path, path: str, data: bytes | None, mode: str) -> None:
    parts = path.split("/")
    if data is None or any(part in ("", ".", "..") for part in parts):
        return
    target = folder.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(target, flags, 0o755 if mode == "100755" else 0o644), "wb") as out:
        out.write(data)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
