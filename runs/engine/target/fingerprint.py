"""Proof of read-only: a fingerprint of a target, taken without running anything from it.

A fingerprint holds the repository's HEAD and branch (read from the files, not by git), the
index's size and time, which tracked files differ from the index (hashed by this process, no
filters: see `gitworktree`), the number of files, and one entry per path (kind, size, mtime,
mode) with a digest over them all. Walking stops at `max_entries` paths or `time_limit` seconds,
whichever comes first; the walk order is fixed (depth first, names sorted), so two bounded
fingerprints of the same tree cover the same paths and `compare` compares what both cover.
An entry costs about 60 bytes in `to_dict()`.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from runs.engine.target.confinement import Confinement, Refused
from runs.engine.target.gitlayout import GitLayout, GitRefused, locate, read_head
from runs.engine.target.gitsession import GitFailed, GitLimits, GitSession
from runs.engine.target.gitworktree import compare as compare_worktree
from runs.engine.target.gitworktree import index_files
from runs.engine.target.secrets import is_secret_name

MAX_ENTRIES = 200_000
TIME_LIMIT = 30.0
NAMED = 20  # changed paths named in words; the rest are counted


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    root: str
    head: str | None = None  # the commit HEAD names, when the target is a repository
    branch: str | None = None
    index: str = ""  # size and mtime of the git index, "" without one
    repository: str = ""  # why there is no repository state, "" when there is
    worktree: tuple[str, ...] = ()  # tracked files that differ from the index, in words
    file_count: int = 0
    digest: str = ""
    entries: Mapping[str, str] = field(default_factory=dict)  # path -> kind:size:mtime:mode
    complete: bool = True
    note: str = ""  # why the walk stopped early

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "head": self.head,
            "branch": self.branch,
            "index": self.index,
            "repository": self.repository,
            "worktree": list(self.worktree),
            "file_count": self.file_count,
            "digest": self.digest,
            "entries": dict(self.entries),
            "complete": self.complete,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fingerprint:
        return cls(
            root=str(data["root"]),
            head=data.get("head"),
            branch=data.get("branch"),
            index=str(data.get("index", "")),
            repository=str(data.get("repository", "")),
            worktree=tuple(str(item) for item in data.get("worktree", ())),
            file_count=int(data.get("file_count", 0)),
            digest=str(data.get("digest", "")),
            entries={str(k): str(v) for k, v in dict(data.get("entries", {})).items()},
            complete=bool(data.get("complete", True)),
            note=str(data.get("note", "")),
        )


def take(
    root: str | os.PathLike[str],
    *,
    max_entries: int = MAX_ENTRIES,
    time_limit: float = TIME_LIMIT,
) -> Fingerprint:
    """The target's fingerprint now; never runs anything from it and never raises on its content."""
    try:
        confine = Confinement(root)
    except (OSError, RuntimeError) as exc:
        missing = f"the target cannot be opened ({exc.__class__.__name__})"
        return Fingerprint(root=os.fspath(root), repository=missing, complete=False, note=missing)
    deadline = time.monotonic() + time_limit
    entries: dict[str, str] = {}
    digest = hashlib.sha256()
    files = 0
    note = ""
    for path, entry in _walk(confine):
        if len(entries) >= max_entries:
            note = f"stopped at {max_entries} paths"
            break
        if time.monotonic() > deadline:
            note = f"stopped after {time_limit:g} s"
            break
        entries[path] = entry
        files += not entry.startswith("d")
        digest.update(os.fsencode(path) + b"\0" + entry.encode() + b"\n")
    git = _repository_state(confine, deadline)
    return Fingerprint(
        root=str(confine.root),
        file_count=files,
        digest=digest.hexdigest(),
        entries=entries,
        complete=not note,
        note=note,
        **git,
    )


def compare(before: Fingerprint, after: Fingerprint) -> list[str]:
    """What changed between two fingerprints, one sentence each; empty when nothing did."""
    changes = []
    if before.root != after.root:
        changes.append(f"the target's real path changed from {before.root} to {after.root}")
    if before.head != after.head:
        changes.append(f"HEAD moved from {_short(before.head)} to {_short(after.head)}")
    if before.branch != after.branch:
        changes.append(f"the branch changed from {before.branch} to {after.branch}")
    if before.index != after.index:
        changes.append("the git index was written")
    now_differing = sorted(set(after.worktree) - set(before.worktree))
    if now_differing:
        changes.append("tracked files now differ from the index: " + _names(now_differing))
    changes += _entry_changes(before, after)
    if changes and not (before.complete and after.complete):
        reason = before.note or after.note
        changes.append(f"(only the paths both fingerprints cover were compared: {reason})")
    return changes


def describe(before: Fingerprint, after: Fingerprint) -> str:
    """One line for a report's Method section."""
    changes = compare(before, after)
    if not changes:
        bound = "" if before.complete and after.complete else f" ({before.note or after.note})"
        return f"target unchanged during the run{bound}"
    return "target changed during the run: " + "; ".join(changes)


def _entry_changes(before: Fingerprint, after: Fingerprint) -> list[str]:
    old, new = dict(before.entries), dict(after.entries)
    if not (before.complete and after.complete):
        limit = min(
            (
                _order(max(fp.entries, key=_order))
                for fp in (before, after)
                if not fp.complete and fp.entries
            ),
            default=None,
        )
        if limit is not None:
            old = {p: e for p, e in old.items() if _order(p) <= limit}
            new = {p: e for p, e in new.items() if _order(p) <= limit}
    added = sorted(new.keys() - old.keys(), key=_order)
    removed = sorted(old.keys() - new.keys(), key=_order)
    edited = sorted((p for p in old.keys() & new.keys() if old[p] != new[p]), key=_order)
    out = []
    if added:
        out.append("added: " + _names(added))
    if removed:
        out.append("removed: " + _names(removed))
    if edited:
        out.append("changed: " + _names([f"{p} ({_what(old[p], new[p])})" for p in edited]))
    return out


def _what(old: str, new: str) -> str:
    kind_a, size_a, _, mode_a = _fields(old)
    kind_b, size_b, _, mode_b = _fields(new)
    if kind_a != kind_b:
        return "type changed"
    if size_a != size_b:
        return f"size {size_a} -> {size_b} bytes"
    if mode_a != mode_b:
        return "permissions changed"
    return "modified"


def _fields(entry: str) -> tuple[str, str, str, str]:
    kind, size, mtime, mode = [*entry.split(":"), "", "", ""][:4]
    return kind, size, mtime, mode


def _walk(confine: Confinement) -> Iterator[tuple[str, str]]:
    """(relative path, entry) depth first with names sorted; links are recorded, not followed.
    Folders are entered through the confinement's descriptors, so one swapped for a link is
    never listed."""
    try:
        with confine.directory(confine.root, listing=True) as fd:
            yield from _folder(confine, fd, "")
    except Refused:
        return


def _folder(confine: Confinement, fd: int, prefix: str) -> Iterator[tuple[str, str]]:
    try:
        with os.scandir(fd) as found:
            names = sorted(entry.name for entry in found)
    except OSError:
        return
    for name in names:
        path = f"{prefix}{name}"
        if path == ".git":
            continue  # the repository's own files: HEAD and the index are recorded instead
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            yield path, "?"
            continue
        if stat.S_ISDIR(info.st_mode):
            yield path, f"d:0:0:{stat.S_IMODE(info.st_mode):o}"
            child = confine.open_dir_at(fd, name, listing=True)
            if child is not None:
                try:
                    yield from _folder(confine, child, f"{path}/")
                finally:
                    os.close(child)
        else:
            kind = "f" if stat.S_ISREG(info.st_mode) else "l" if stat.S_ISLNK(info.st_mode) else "s"
            mode = f"{stat.S_IMODE(info.st_mode):o}"
            yield path, f"{kind}:{info.st_size}:{info.st_mtime_ns}:{mode}"


def _order(path: str) -> tuple[str, ...]:
    """The walk's order: a parent before its children, siblings by name."""
    return tuple(path.split("/"))


def _repository_state(confine: Confinement, deadline: float) -> dict[str, Any]:
    try:
        layout = locate(confine)
        if layout is None:
            return {"repository": "not a git repository"}
        head, branch = read_head(layout)
        worktree = _differing(layout, confine, deadline) if head is not None else ()
        index = _stamp(layout)
    except (GitRefused, GitFailed) as exc:
        return {"repository": str(exc)}
    except OSError as exc:
        return {"repository": f"the repository could not be read ({exc.__class__.__name__})"}
    return {"head": head, "branch": branch, "index": index, "worktree": worktree}


def _differing(layout: GitLayout, confine: Confinement, deadline: float) -> tuple[str, ...]:
    """Tracked files whose working-tree bytes differ from the index, without filters."""
    limits = GitLimits(timeout=max(1.0, deadline - time.monotonic()))
    with GitSession(layout, limits, time.monotonic() + limits.timeout) as session:
        index = index_files(session)
        tracked = sorted(path for path in index if not is_secret_name(path))  # never opened
        found = compare_worktree(
            session, confine, index, tracked, max_file_bytes=limits.max_blob_bytes, index=index
        )
    differing = [f"{change.kind}: {change.path}" for change in found.changes]
    if found.stopped:
        differing.append(f"(compared {found.compared} tracked files: stopped at {found.stopped})")
    return tuple(differing)


def _stamp(layout: GitLayout) -> str:
    index = layout.index
    if index is None:
        return ""
    info = os.lstat(index)
    return f"{info.st_size}:{info.st_mtime_ns}"


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:NAMED])
    return shown + (f" and {len(items) - NAMED} more" if len(items) > NAMED else "")


def _short(oid: str | None) -> str:
    return oid[:12] if oid else "nothing"
