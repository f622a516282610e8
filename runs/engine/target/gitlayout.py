"""Where a target's repository lives, checked, and the few files of it read without git.

git never reads the target's own `.git` directory as a repository: `gitshadow` builds a private
shadow directory for each call. What is read here (HEAD, refs, packed-refs, `.git` files,
commondir, the one config value that names the object format) goes through the target's
confinement like every other file: a descriptor walk with no link followed.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from runs.engine.target.confinement import Confinement, NotRegular, Refused

SMALL_FILE_LIMIT = 64 * 1024
PACKED_REFS_LIMIT = 64 * 1024 * 1024
OID_HEX = {"sha1": 40, "sha256": 64}
SYMREF = re.compile(rb"ref: (refs/[^\x00-\x20\x7f~^:?*\[\\]{1,900})\n?")
REF_PART = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\/]{1,255}")


class GitRefused(Exception):
    """The repository cannot be read safely; the message is one sentence for the model."""


@dataclass(frozen=True, kw_only=True)
class GitLayout:
    confine: Confinement  # every file of the repository is opened through it
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


def locate(confine: Confinement) -> GitLayout | None:
    """The repository at the top of the target, None when there is no `.git`."""
    root = confine.root
    dot_git = root / ".git"
    try:
        info = os.lstat(dot_git)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise GitRefused(f".git cannot be inspected ({exc.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        git_dir = inside(root, dot_git, ".git (a symbolic link)")
    elif stat.S_ISREG(info.st_mode):
        named = _gitdir_from_file(confine, dot_git)
        git_dir = inside(root, named, ".git (a file naming the git directory)")
    elif stat.S_ISDIR(info.st_mode):
        git_dir = dot_git
    else:
        raise GitRefused(".git is neither a directory nor a file: refused")
    if not git_dir.is_dir():
        raise GitRefused(".git does not lead to a repository directory")
    common_dir = git_dir
    if os.path.lexists(git_dir / "commondir"):
        raw = read_small(confine, git_dir / "commondir")
        pointed = raw.decode("utf-8", "surrogateescape").strip()
        common_dir = inside(root, git_dir / pointed, "the repository of this linked worktree")
    return GitLayout(
        confine=confine,
        root=root,
        git_dir=git_dir,
        common_dir=common_dir,
        object_format=_object_format(confine, common_dir),
    )


def _gitdir_from_file(confine: Confinement, dot_git: Path) -> Path:
    text = read_small(confine, dot_git).decode("utf-8", "surrogateescape").strip()
    if not text.startswith("gitdir:"):
        raise GitRefused(".git is a file that does not name a git directory: refused")
    return dot_git.parent / text.removeprefix("gitdir:").strip()


def inside(root: Path, path: Path, subject: str) -> Path:
    """The real path of `path` (links followed), refused unless it lies inside `root`."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise GitRefused(f"{subject} leads nowhere: refused") from None
    if real != root and not real.is_relative_to(root):
        raise GitRefused(
            f"{subject} points outside the target: refused, nothing outside the target is read"
        )
    return real


def _object_format(confine: Confinement, common_dir: Path) -> str:
    """sha1 or sha256, from the one config value that changes how objects are named."""
    try:
        text = read_small(confine, common_dir / "config").decode("utf-8", "replace")
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


def read_small(confine: Confinement, path: Path, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """A plain file's bytes through the confinement's walk (no link anywhere on the way, no
    FIFO, no device, one link), at most `limit`."""
    try:
        fd = confine.open_file(path)
    except NotRegular:
        raise GitRefused(f"{path.name} is not a plain file: refused") from None
    except Refused as exc:
        raise GitRefused(f"{path.name} cannot be read: {exc}") from None
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise GitRefused(f"{path.name} is larger than {limit} bytes: refused")
    return data


def read_head(layout: GitLayout) -> tuple[str | None, str | None]:
    """(commit id or None when unborn, branch ref or None when detached), read without git."""
    raw = read_small(layout.confine, layout.git_dir / "HEAD", 4096)
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
            return read_small(layout.confine, folder / name, 4096)
        except GitRefused:
            continue
    try:
        packed = read_small(layout.confine, layout.common_dir / "packed-refs", PACKED_REFS_LIMIT)
    except GitRefused:
        return b""
    for line in packed.splitlines():
        oid, _, ref = line.partition(b" ")
        if ref == name.encode() and not line.startswith((b"#", b"^")):
            return oid
    return b""


def checked_head(layout: GitLayout) -> bytes:
    """HEAD as the shadow directory may hold it: a branch or a commit id, nothing else."""
    raw = read_small(layout.confine, layout.git_dir / "HEAD", 4096)
    if SYMREF.fullmatch(raw) or re.fullmatch(rf"[0-9a-f]{{{layout.oid_length}}}\n?".encode(), raw):
        return raw if raw.endswith(b"\n") else raw + b"\n"
    raise GitRefused("HEAD is neither a branch nor a commit id: refused")
