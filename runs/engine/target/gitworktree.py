"""Tracked files against the working tree, read by this process: no filter, attribute or hook.

git never opens a working-tree file here. The tracked list comes from git (a tree, or the index
read through the shadow directory); each working-tree file is opened by us without following
links, never blocking on a FIFO, through the target's confinement, and hashed as a raw blob.
A file whose bytes equal the recorded blob is unchanged; line-ending or clean filters are
deliberately not applied, so a file they would rewrite shows as changed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from runs.engine.target.confinement import (
    Confinement,
    NoSuchFile,
    NotRegular,
    OutsideTarget,
    Refused,
    printable,
)
from runs.engine.target.gitsession import GitSession
from runs.engine.target.secrets import is_secret_name

LISTING_CAP = 64 * 1024 * 1024
READ_CHUNK = 1024 * 1024
SUBMODULE = "160000"


@dataclass(frozen=True, kw_only=True)
class Tracked:
    mode: str  # 100644, 100755, 120000 (a link) or 160000 (a submodule)
    oid: str
    size: int = -1  # what the index recorded of the file (index entries only)
    mtime: tuple[int, int] = (0, 0)  # seconds, nanoseconds


@dataclass(frozen=True, kw_only=True)
class WorkFile:
    state: str  # file, link, missing, special, refused or large
    mode: str = ""
    oid: str = ""
    data: bytes | None = None  # the bytes, when small enough to show
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class Change:
    path: str
    kind: str  # modified, added, deleted, type changed, not readable
    old: Tracked | None
    new: WorkFile


@dataclass(frozen=True, kw_only=True)
class Comparison:
    changes: list[Change]
    compared: int
    stopped: str = ""  # why the comparison stopped early, when it did


def tree_files(session: GitSession, tree: str) -> dict[str, Tracked]:
    """Every file of a tree, by path."""
    out = session.check("ls-tree", "-r", "-z", "--full-tree", tree, max_bytes=LISTING_CAP)
    files = {}
    for record in out.split(b"\0"):
        head, _, path = record.partition(b"\t")
        parts = head.split()
        if len(parts) == 3 and path:
            files[os.fsdecode(path)] = Tracked(mode=parts[0].decode(), oid=parts[2].decode())
    return files


def index_files(session: GitSession) -> dict[str, Tracked]:
    """Every file the index records (stage 0, or the first stage of a conflict), by path,
    with the size and time git recorded, so unchanged files need not be read."""
    if session.layout.index is None:
        return {}
    out = session.check(
        "ls-files", "--stage", "--debug", "-z", with_index=True, max_bytes=LISTING_CAP
    )
    files: dict[str, Tracked] = {}
    chunks = out.split(b"\0")
    head = chunks[0]
    for chunk in chunks[1:]:
        # After each path: five debug lines, then the next entry's head.
        lines = chunk.split(b"\n", 5)
        entry, _, path = head.partition(b"\t")
        parts = entry.split()
        if len(parts) == 3 and path:
            size, mtime = _recorded(lines[:5])
            files.setdefault(
                os.fsdecode(path),
                Tracked(mode=parts[0].decode(), oid=parts[1].decode(), size=size, mtime=mtime),
            )
        head = lines[5] if len(lines) > 5 else b""
    return files


def _recorded(lines: list[bytes]) -> tuple[int, tuple[int, int]]:
    """(size, mtime) from `ls-files --debug` lines; -1 when they cannot be read."""
    fields = dict(
        item.strip().split(b": ", 1)
        for line in lines
        for item in line.split(b"\t")
        if b": " in item
    )
    try:
        seconds, _, nanos = fields[b"mtime"].partition(b":")
        return int(fields[b"size"]), (int(seconds), int(nanos or 0))
    except (KeyError, ValueError):
        return -1, (0, 0)


def compare(
    session: GitSession,
    confine: Confinement,
    base: dict[str, Tracked],
    paths: Iterable[str],
    *,
    max_file_bytes: int,
    index: dict[str, Tracked] | None = None,
) -> Comparison:
    """How each of `paths` in the working tree differs from `base` (absent there: added).

    With the `index`, a file whose size, time and mode are what the index recorded for the
    same blob is unchanged without being read, as git itself decides."""
    budget = session.limits.max_worktree_bytes
    changes: list[Change] = []
    compared = 0
    recorded_at = _index_time(session)
    real_dirs: dict[str, bool] = {}
    for path in paths:
        old = base.get(path)
        if old is not None and old.mode == SUBMODULE:
            continue  # another repository's commit: not compared
        if session.left() <= 0:
            return Comparison(changes=changes, compared=compared, stopped="the time limit")
        compared += 1
        entry = (index or {}).get(path)
        if (
            old is not None
            and entry is not None
            and (entry.oid, entry.mode) == (old.oid, old.mode)
            and _as_recorded(str(confine.root), path, entry, recorded_at, real_dirs)
        ):
            continue
        new = read_work_file(confine, path, session.layout.object_format, max_file_bytes)
        budget -= _cost(new, confine, path)
        if budget < 0:
            return Comparison(
                changes=changes,
                compared=compared,
                stopped=f"{session.limits.max_worktree_bytes} bytes read",
            )
        kind = _kind(old, new)
        if kind:
            changes.append(Change(path=path, kind=kind, old=old, new=new))
    return Comparison(changes=changes, compared=compared)


def _index_time(session: GitSession) -> int:
    index = session.layout.index
    try:
        return os.lstat(index).st_mtime_ns if index is not None else 0
    except OSError:
        return 0


def _as_recorded(
    root: str, path: str, entry: Tracked, recorded_at: int, real_dirs: dict[str, bool]
) -> bool:
    """Whether the working-tree file is exactly as the index recorded it (never read)."""
    if entry.size < 0:
        return False
    parent, _, name = path.rpartition("/")
    here = root
    for part in parent.split("/") if parent else ():
        here = f"{here}/{part}"
        if here not in real_dirs:
            try:
                real_dirs[here] = stat.S_ISDIR(os.lstat(here).st_mode)
            except OSError:
                real_dirs[here] = False
        if not real_dirs[here]:
            return False
    try:
        info = os.lstat(f"{here}/{name}")
    except OSError:
        return False
    link = entry.mode == "120000"
    if (stat.S_ISLNK(info.st_mode) != link) or not (link or stat.S_ISREG(info.st_mode)):
        return False
    if not link and bool(info.st_mode & stat.S_IXUSR) != (entry.mode == "100755"):
        return False
    seconds, nanos = divmod(info.st_mtime_ns, 1_000_000_000)
    same_time = seconds == entry.mtime[0] and (entry.mtime[1] in (0, nanos))
    # A file written in the same instant as the index may have changed since ("racy git").
    return info.st_size == entry.size and same_time and info.st_mtime_ns < recorded_at


def _kind(old: Tracked | None, new: WorkFile) -> str:
    if new.state == "missing":
        return "deleted" if old is not None else ""
    if new.state in ("special", "refused"):
        return "not readable"
    if old is None:
        return "added"
    if (old.mode == "120000") != (new.state == "link"):
        return "type changed"
    if old.oid != new.oid or old.mode != new.mode:
        return "modified"
    return ""


def _cost(new: WorkFile, confine: Confinement, path: str) -> int:
    if new.state not in ("file", "large"):
        return 0
    try:
        return os.lstat(confine.root / path).st_size
    except OSError:
        return 0


def read_work_file(confine: Confinement, path: str, object_format: str, max_bytes: int) -> WorkFile:
    """The working-tree side of a tracked path, as git would record it without filters.

    Its folder is reached by the confinement's descriptor walk: a folder on the way that is a
    link (or became one a moment ago) makes the file missing, as git would see it, and nothing
    behind the link is read."""
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return WorkFile(state="refused", note="not a plain relative path")
    try:
        with confine.directory(confine.root.joinpath(*parts[:-1])) as folder:
            return _read_at(confine, folder, path, parts[-1], object_format, max_bytes)
    except (NoSuchFile, OutsideTarget):
        return WorkFile(state="missing")  # behind a link or a file: git sees it gone
    except Refused as exc:
        return WorkFile(state="refused", note=str(exc))


def _read_at(
    confine: Confinement, folder: int, path: str, name: str, object_format: str, max_bytes: int
) -> WorkFile:
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return WorkFile(state="missing")
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.fsencode(os.readlink(name, dir_fd=folder))
        except OSError:
            return WorkFile(state="missing")
        return WorkFile(
            state="link", mode="120000", oid=blob_id(target, object_format), data=target
        )
    if stat.S_ISDIR(info.st_mode):
        return WorkFile(state="missing")  # a directory where a file was tracked
    if not stat.S_ISREG(info.st_mode):
        return WorkFile(state="special", note="not a regular file (FIFO, socket or device)")
    if is_secret_name(path):
        return WorkFile(state="refused", note=f"{printable(path)}: secret file, not shown")
    try:
        fd = confine.open_at(folder, name, printable(path))
    except NotRegular:
        return WorkFile(state="special", note="not a regular file")
    except Refused as exc:
        return WorkFile(state="refused", note=str(exc))
    return _read_regular(fd, object_format, max_bytes)


def _read_regular(fd: int, object_format: str, max_bytes: int) -> WorkFile:
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(handle.fileno())
        mode = "100755" if opened.st_mode & stat.S_IXUSR else "100644"
        digest = hashlib.new(object_format)
        digest.update(b"blob %d\0" % opened.st_size)
        kept = bytearray()
        remaining = opened.st_size
        while remaining > 0:
            chunk = handle.read(min(READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            digest.update(chunk)
            if len(kept) <= max_bytes:
                kept.extend(chunk)
    if opened.st_size > max_bytes:
        return WorkFile(state="large", mode=mode, oid=digest.hexdigest())
    return WorkFile(state="file", mode=mode, oid=digest.hexdigest(), data=bytes(kept))


def blob_id(data: bytes, object_format: str) -> str:
    """The id git gives these bytes as a blob."""
    return hashlib.new(object_format, b"blob %d\0" % len(data) + data).hexdigest()


def within(path: str, scope: str | None) -> bool:
    """Whether a repository path lies under the path an agent named (None or "." is all)."""
    return scope in (None, ".") or path == scope or path.startswith(f"{scope}/")
