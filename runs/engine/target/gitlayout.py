"""Where a target's repository lives, checked, and the shadow git directory git is pointed at.

git never reads the target's own `.git` directory as a repository. Each call builds a private
shadow directory that holds a configuration we write, a copy of HEAD and the refs, and links to
the object store. The repository's config (with its include/includeIf, filter and diff drivers,
fsmonitor, pager, hook and program settings), hooks/, info/ (attributes, excludes, grafts) and
objects/info/alternates are simply not there, so nothing the repository configures can run or
name a file for git to read.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SMALL_FILE_LIMIT = 64 * 1024
PACKED_REFS_LIMIT = 64 * 1024 * 1024
MAX_REFS = 50_000
MAX_OBJECT_ENTRIES = 500_000
OID_HEX = {"sha1": 40, "sha256": 64}
SYMREF = re.compile(rb"ref: (refs/[^\x00-\x20\x7f~^:?*\[\\]{1,900})\n?")
REF_PART = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\/]{1,255}")
LOOSE_DIR = re.compile(r"[0-9a-f]{2}")

# Our whole configuration: the repository's own file is never read.
SHADOW_CONFIG = """\
[core]
\trepositoryformatversion = {version}
\tbare = true
\tfsmonitor = false
\thooksPath = /dev/null
\tpager = cat
\tattributesFile = /dev/null
\texcludesFile = /dev/null
\tquotePath = true
\tuntrackedCache = false
\tcommitGraph = true
[gc]
\tauto = 0
[diff]
\trenames = true
\tnoprefix = false
\tmnemonicPrefix = false
\tsubmodule = short
[log]
\tshowSignature = false
\tmailmap = false
\tdecorate = false
[mailmap]
\tfile = /dev/null
\tblob =
[color]
\tui = false
[advice]
\tdetachedHead = false
"""
SHA256_EXTENSION = "[extensions]\n\tobjectFormat = sha256\n"


class GitRefused(Exception):
    """The repository cannot be read safely; the message is one sentence for the model."""


@dataclass(frozen=True, kw_only=True)
class GitLayout:
    root: Path  # the target's real path
    git_dir: Path  # HEAD and the index live here
    common_dir: Path  # refs, packed-refs and objects live here (differs for linked worktrees)
    object_format: str  # "sha1" or "sha256"

    @property
    def oid_length(self) -> int:
        return OID_HEX[self.object_format]

    @property
    def index(self) -> Path | None:
        """The index file, when it is a plain file of the repository."""
        path = self.git_dir / "index"
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None
        except OSError:
            return None


def locate(root: Path) -> GitLayout | None:
    """The repository at the top of `root` (already resolved), None when there is no `.git`."""
    dot_git = root / ".git"
    try:
        info = os.lstat(dot_git)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GitRefused(f".git cannot be inspected ({exc.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        git_dir = _inside(root, dot_git, ".git (a symbolic link)")
    elif stat.S_ISREG(info.st_mode):
        named = _gitdir_from_file(dot_git)
        git_dir = _inside(root, named, ".git (a file naming the git directory)")
    elif stat.S_ISDIR(info.st_mode):
        git_dir = dot_git
    else:
        raise GitRefused(".git is neither a directory nor a file: refused")
    if not git_dir.is_dir():
        raise GitRefused(".git does not lead to a repository directory")
    common_dir = git_dir
    if os.path.lexists(git_dir / "commondir"):
        pointed = read_small(git_dir / "commondir").decode("utf-8", "surrogateescape").strip()
        common_dir = _inside(root, git_dir / pointed, "the repository of this linked worktree")
    return GitLayout(
        root=root,
        git_dir=git_dir,
        common_dir=common_dir,
        object_format=_object_format(common_dir),
    )


def _gitdir_from_file(dot_git: Path) -> Path:
    text = read_small(dot_git).decode("utf-8", "surrogateescape").strip()
    if not text.startswith("gitdir:"):
        raise GitRefused(".git is a file that does not name a git directory: refused")
    return dot_git.parent / text.removeprefix("gitdir:").strip()


def _inside(root: Path, path: Path, subject: str) -> Path:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise GitRefused(f"{subject} leads nowhere: refused") from None
    if real != root and not real.is_relative_to(root):
        raise GitRefused(
            f"{subject} points outside the target: refused, nothing outside the target is read"
        )
    return real


def _object_format(common_dir: Path) -> str:
    """sha1 or sha256, from the one config value that changes how objects are named."""
    try:
        text = read_small(common_dir / "config").decode("utf-8", "replace")
    except GitRefused:
        return "sha1"
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[] ").lower()
        elif section == "extensions" and "=" in line:
            key, value = (part.strip().lower() for part in line.split("=", 1))
            if key == "objectformat" and value == "sha256":
                return "sha256"
            if key == "refstorage" and value not in ("", "files"):
                raise GitRefused(f"refs stored as {value!r} are not supported")
    return "sha1"


def read_small(path: Path, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """A plain file's bytes, never through a link, a FIFO or a device, at most `limit`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise GitRefused(f"{path.name} cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise GitRefused(f"{path.name} is not a plain file: refused")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise GitRefused(f"{path.name} is larger than {limit} bytes: refused")
    return data


def read_head(layout: GitLayout) -> tuple[str | None, str | None]:
    """(commit id or None when unborn, branch ref or None when detached), read without git."""
    raw = read_small(layout.git_dir / "HEAD", 4096)
    branch = None
    seen = 0
    while (match := SYMREF.fullmatch(raw)) and seen < 5:
        branch = branch or match.group(1).decode()
        raw = _ref_value(layout, match.group(1).decode())
        seen += 1
    oid = raw.strip().decode("ascii", "replace")
    if re.fullmatch(f"[0-9a-f]{{{layout.oid_length}}}", oid):
        return oid, branch
    if branch is not None:
        return None, branch  # a branch with no commits yet
    raise GitRefused("HEAD is neither a branch nor a commit id: refused")


def _ref_value(layout: GitLayout, name: str) -> bytes:
    if any(not REF_PART.fullmatch(part) or part.startswith(".") for part in name.split("/")):
        return b""
    base = layout.git_dir if name.startswith(("refs/bisect/", "refs/worktree/")) else None
    for folder in (base, layout.common_dir):
        if folder is None:
            continue
        try:
            return read_small(folder / name, 4096)
        except GitRefused:
            continue
    try:
        packed = read_small(layout.common_dir / "packed-refs", PACKED_REFS_LIMIT)
    except GitRefused:
        return b""
    for line in packed.splitlines():
        oid, _, ref = line.partition(b" ")
        if ref == name.encode() and not line.startswith((b"#", b"^")):
            return oid
    return b""


def build_shadow(layout: GitLayout, shadow: Path) -> None:
    """Fill the empty directory `shadow` with a git directory git may read safely."""
    version = 1 if layout.object_format == "sha256" else 0
    config = SHADOW_CONFIG.format(version=version)
    if layout.object_format == "sha256":
        config += SHA256_EXTENSION
    (shadow / "config").write_text(config)
    (shadow / "HEAD").write_bytes(_checked_head(layout))
    for name in ("packed-refs", "shallow"):
        source = layout.common_dir / name
        if os.path.lexists(source):
            (shadow / name).write_bytes(read_small(source, PACKED_REFS_LIMIT))
    _copy_refs(layout, shadow / "refs")
    _link_objects(layout, shadow / "objects")
    for entry in _scan(layout.git_dir):
        if entry.name.startswith("sharedindex.") and entry.is_file(follow_symlinks=False):
            (shadow / entry.name).symlink_to(entry.path)  # a split index's other half


def _checked_head(layout: GitLayout) -> bytes:
    raw = read_small(layout.git_dir / "HEAD", 4096)
    if SYMREF.fullmatch(raw) or re.fullmatch(rf"[0-9a-f]{{{layout.oid_length}}}\n?".encode(), raw):
        return raw if raw.endswith(b"\n") else raw + b"\n"
    raise GitRefused("HEAD is neither a branch nor a commit id: refused")


def _copy_refs(layout: GitLayout, destination: Path) -> None:
    """Loose refs that are plain, small files with a valid name and value; others are skipped."""
    destination.mkdir()
    (destination / "heads").mkdir()
    (destination / "tags").mkdir()
    copied = 0
    refs = layout.common_dir / "refs"
    if refs.is_symlink():
        refs = _inside(layout.root, refs, "refs/")
    pending = [(refs, destination)]
    while pending:
        source, target = pending.pop()
        for entry in _scan(source):
            if not REF_PART.fullmatch(entry.name) or entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                (target / entry.name).mkdir(exist_ok=True)
                pending.append((Path(entry.path), target / entry.name))
            elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(".lock"):
                copied += 1
                if copied > MAX_REFS:
                    raise GitRefused(f"more than {MAX_REFS} loose refs: refused")
                value = _ref_file(Path(entry.path), layout.oid_length)
                if value is not None:
                    (target / entry.name).write_bytes(value)


def _ref_file(path: Path, oid_length: int) -> bytes | None:
    try:
        raw = read_small(path, 4096)
    except GitRefused:
        return None
    if SYMREF.fullmatch(raw) or re.fullmatch(rf"[0-9a-f]{{{oid_length}}}\n?".encode(), raw):
        return raw
    return None


def _link_objects(layout: GitLayout, destination: Path) -> None:
    """Link the object store's plain parts; info/alternates (other repositories) is left out."""
    objects = _inside(layout.root, layout.common_dir / "objects", "objects/")
    destination.mkdir()
    entries = 0
    for entry in _scan(objects):
        linked = entry.name == "pack" or LOOSE_DIR.fullmatch(entry.name)
        if linked and entry.is_dir(follow_symlinks=False):
            entries += _plain_files_only(Path(entry.path), MAX_OBJECT_ENTRIES - entries)
            (destination / entry.name).symlink_to(entry.path)
    info = objects / "info"
    if not info.is_symlink() and info.is_dir():
        (destination / "info").mkdir()
        graph = info / "commit-graph"
        if not graph.is_symlink() and graph.is_file():
            (destination / "info" / "commit-graph").symlink_to(graph)


def _plain_files_only(folder: Path, room: int) -> int:
    count = 0
    for entry in _scan(folder):
        count += 1
        if count > room:
            raise GitRefused(f"the object store has more than {MAX_OBJECT_ENTRIES} files: refused")
        if not entry.is_file(follow_symlinks=False):
            raise GitRefused(
                f"objects/{folder.name}/ holds a link or special file: refused, "
                "nothing outside the target is read"
            )
    return count


def _scan(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            yield from entries
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise GitRefused(f"{folder.name}/ cannot be read ({exc.strerror})") from None
