"""Path confinement: nothing outside the target; what is secret is runs.engine.target.secrets' rule.

This module is the one owner of where a path may go and of how anything in the target is
opened. Every path an agent names is relative to the target root; `resolve` maps it to a real
path (links inside the target followed) that must lie inside the root. That is only a guide:
every reader then opens what it names by a descriptor walk. The root is opened from `/` one
name at a time with O_NOFOLLOW (and checked to be the directory the run was launched on, by
device and inode), then each component with `openat(O_NOFOLLOW | O_DIRECTORY)` from its
parent's descriptor, and the last one with O_NOFOLLOW | O_NONBLOCK. A directory swapped for a
link at any moment makes the walk fail (ELOOP), never lead outside, and a FIFO never blocks.
What was opened is checked on its descriptor: a regular file, one link, the root's device.
Directories are listed the same way (`os.scandir` on a descriptor from the walk).

The root itself is checked again at every use, not only at launch: `open_target(run)` fails
with a sentence when the directory the run was launched on has moved, was replaced (by
another directory or by a link) or is no longer under ORCHESTRATOR_ALLOWED_ROOTS, and
`Confinement.verify()` repeats the check before each tool call.

Hard links: a regular file with more than one link is refused, in the working tree and in the
git directory alike. Its other names may be a secret (`.env`) or lie outside the target (another
repository's objects), and nothing on the file says which, so such a file is not read at all;
the refusal says so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runs.engine.target import roots
from runs.engine.target.secrets import is_secret_name, readable_contents, redact_name

# A NUL in the first 8 KB makes a file binary (git's own rule); one anywhere is refused too,
# as no NUL may reach the model's transcript or the database.
BINARY_SNIFF = 8192
MAX_PATH_CHARS = 4096
# Directories on the way are opened as bare paths (no read permission needed to pass through,
# as with a path); a directory to list is opened readable; the last name never follows a link
# nor waits on a FIFO.
DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
HARD_LINK_REFUSAL = (
    "has {links} hard links; a hard-linked file may be a secret or a file outside the "
    "target under another name, so it is not read"
)


class Refused(Exception):
    """A path or file the agent may not see; the message is safe to show the model."""


class OutsideTarget(Refused):
    """The path leaves the target (absolute, `..`, or a link out of it)."""


class SecretFile(Refused):
    """A secret by name or by content: never shown, never checked."""


class NotRegular(Refused):
    """A folder, link, FIFO, device or socket where a regular file is needed."""


class HardLinked(Refused):
    """A regular file with more than one link: its other names may be secret or outside."""


class NoSuchFile(Refused):
    """Nothing at that path."""


class TargetChanged(Exception):
    """The run's target is no longer the directory it was launched on; the step fails."""


def printable(text: str) -> str:
    """A name from the target as it may be shown: undecodable bytes and control characters
    become backslash escapes, so no control byte, NUL or lone surrogate goes any further."""
    data = text.encode("utf-8", "surrogateescape")
    decoded = data.decode("utf-8", "backslashreplace")
    if decoded.isprintable():
        return decoded
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode()
        for char in decoded
    )


def target_identity(path: str | os.PathLike[str]) -> str:
    """`device:inode` of a directory, recorded at launch and compared at every use."""
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"


def open_target(run: Any) -> Confinement:
    """The run's target checked again now: the same real path, the same directory (device
    and inode) and still under ORCHESTRATOR_ALLOWED_ROOTS. Raises TargetChanged with a
    sentence otherwise. `run` is anything with `target` (and, for runs launched since the
    identity is recorded, `target_real_path` and `target_identity`)."""
    recorded = str(getattr(run, "target_real_path", "") or run.target)
    identity = str(getattr(run, "target_identity", "") or "")
    try:
        real = os.path.realpath(recorded, strict=True)
        info = os.stat(real)
    except (OSError, RuntimeError, ValueError):
        raise TargetChanged(
            f"the target {printable(recorded)} is gone (moved or deleted since the launch); "
            "nothing was read"
        ) from None
    if real != recorded:
        raise TargetChanged(
            f"the target {printable(recorded)} now leads to {printable(real)} (a link or a "
            "moved parent replaced it since the launch); nothing was read"
        )
    if not roots.in_fence(real):
        raise TargetChanged(
            f"the target {printable(real)} is no longer under ORCHESTRATOR_ALLOWED_ROOTS; "
            "nothing was read"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise TargetChanged(f"the target {printable(real)} is no longer a directory")
    now = f"{info.st_dev}:{info.st_ino}"
    if identity and now != identity:
        raise TargetChanged(
            f"the target {printable(real)} was replaced by another directory since the launch "
            f"(device:inode {now}, launched on {identity}); nothing was read"
        )
    return Confinement(real, identity=now)


class Confinement:
    def __init__(self, root: str | os.PathLike[str], *, identity: str | None = None) -> None:
        self.root = Path(os.path.realpath(root, strict=True))
        self.identity = identity or target_identity(self.root)
        self.device = int(self.identity.split(":", 1)[0])

    def verify(self) -> None:
        """Raise TargetChanged unless the root is still the directory this was opened on."""
        try:
            same_path = os.path.realpath(self.root, strict=True) == str(self.root)
            same_dir = same_path and target_identity(self.root) == self.identity
        except (OSError, RuntimeError, ValueError):
            same_dir = False
        if not same_dir:
            raise TargetChanged(
                f"the target {printable(str(self.root))} was moved or replaced while the agent "
                "was reading it; stopped"
            )

    def resolve(self, raw: object) -> Path:
        """The real path for an agent's relative path, or Refused."""
        if not isinstance(raw, str):
            raise Refused("path must be a string")
        shown = printable(raw[:200])
        if len(raw) > MAX_PATH_CHARS:
            raise Refused(f"path is too long ({len(raw)} characters)")
        if "\x00" in raw:
            raise Refused(f"{shown!r}: path contains a NUL byte")
        if any(unicodedata.category(char) in ("Cc", "Cs") for char in raw):
            raise Refused(f"{shown!r}: path contains control characters or invalid text")
        text = raw.strip() or "."
        if text.startswith(("/", "~", "\\")) or (len(text) > 1 and text[1] == ":"):
            raise OutsideTarget(
                f"{shown!r}: absolute paths are refused; use a path relative to the target"
            )
        try:
            real = Path(os.path.realpath(self.root / text))
        except (OSError, RuntimeError, ValueError):
            raise Refused(f"{shown!r}: not a valid path") from None
        if real != self.root and not real.is_relative_to(self.root):
            raise OutsideTarget(f"{shown!r} is outside the target")
        try:
            os.stat(real)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(f"{shown!r}: symlink loop") from None
            if exc.errno == errno.ENAMETOOLONG:
                raise Refused(f"{shown!r}: name too long") from None
        return real

    def relative(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    def shown(self, real: Path) -> str:
        """The relative path as the model may see it (a credential in a name redacted)."""
        return printable(redact_name(self.relative(real)))

    # --- opening: one descriptor walk from the root, no link followed anywhere -------------

    def check_readable(self, real: Path) -> os.stat_result:
        """Refuse secrets, hard links, special files and anything not a regular file."""
        self.refuse_secret(real)
        rel = self.shown(real)
        info = self.stat(real)
        self.check_file(info, rel)
        return info

    def refuse_secret(self, real: Path) -> None:
        if is_secret_name(self.relative(real)):
            raise SecretFile(f"{self.shown(real)}: secret file, not shown")

    def read_bytes(self, real: Path, limit: int) -> bytes:
        """At most `limit` bytes of a checked regular file, or Refused. A private key in it is
        redacted line for line; a file that is a key is refused (the secret rule decides)."""
        self.refuse_secret(real)
        rel = self.shown(real)
        fd = self.open_file(real)
        with os.fdopen(fd, "rb") as handle:
            try:
                data = handle.read(limit)
            except OSError as exc:
                raise Refused(f"{rel}: cannot read ({exc.strerror})") from None
        shown = readable_contents(data)
        if shown is None:
            raise SecretFile(f"{rel}: contains a private key, not shown")
        if b"\x00" in shown:
            raise Refused(f"{rel}: binary file, refused")
        return shown

    def stat(self, real: Path) -> os.stat_result:
        """What is at `real` itself (a link is not followed), reached by the descriptor walk."""
        parts = self._parts(real)
        if not parts:
            with self.directory(self.root) as fd:
                return os.fstat(fd)
        with self.directory(self.root.joinpath(*parts[:-1])) as fd:
            try:
                return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
            except OSError as exc:
                raise _walk_error(exc, self.shown(real)) from None

    def open_file(self, real: Path) -> int:
        """A descriptor of the checked regular file at `real` (the caller closes it)."""
        parts = self._parts(real)
        if not parts:
            raise Refused(". is a directory; use list_dir")
        with self.directory(self.root.joinpath(*parts[:-1])) as fd:
            return self.open_at(fd, parts[-1], self.shown(real))

    def open_at(self, dir_fd: int, name: str, shown: str) -> int:
        """The checked regular file `name` in a directory reached by the walk: looked at before
        it is opened (a device is never opened), opened without following a link or waiting
        on a FIFO, and checked again on the descriptor (the same file, one link, this device)."""
        try:
            before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _walk_error(exc, shown) from None
        self.check_file(before, shown)
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutsideTarget(f"{shown} became a link while it was read; refused") from None
            raise Refused(f"{shown}: cannot open ({exc.strerror})") from None
        try:
            opened = os.fstat(fd)
            self.check_file(opened, shown)
            if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                raise Refused(f"{shown} was replaced while it was read; refused")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def check_file(self, info: os.stat_result, shown: str) -> None:
        """The rule for what may be read: a regular file with one link on the root's device."""
        if stat.S_ISDIR(info.st_mode):
            raise NotRegular(f"{shown} is a directory; use list_dir")
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(f"{shown}: not a regular file (device, FIFO, socket or link), refused")
        if info.st_nlink > 1:
            raise HardLinked(f"{shown}: " + HARD_LINK_REFUSAL.format(links=info.st_nlink))
        if info.st_dev != self.device:
            raise OutsideTarget(f"{shown}: on another file system than the target, refused")

    @contextlib.contextmanager
    def directory(self, real: Path, *, listing: bool = False) -> Iterator[int]:
        """A descriptor of the directory `real`, reached from the root one name at a time with
        no link followed; `listing` opens it readable (for os.scandir), else as a bare path."""
        fd = self._open_root()
        for part in self._parts(real):
            fd = self._step(fd, part, real)  # each step closes the descriptor it started from
        if listing:
            fd = self._step(fd, ".", real, flags=LIST_FLAGS)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_dir_at(self, dir_fd: int, name: str, *, listing: bool = False) -> int | None:
        """A subdirectory's descriptor for a walk, or None when it is a link, gone, unreadable
        or on another device (a walk skips it, as it skips a link out of the target)."""
        flags = LIST_FLAGS if listing else DIR_FLAGS
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError:
            return None
        if os.fstat(fd).st_dev != self.device:
            os.close(fd)
            return None
        return fd

    def _step(self, fd: int, part: str, real: Path, *, flags: int = 0) -> int:
        """One name further down from `fd` (closed here either way)."""
        try:
            return os.open(part, flags or DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ENOTDIR and _is_link(fd, part):
                exc.errno = errno.ELOOP  # O_DIRECTORY says ENOTDIR for a link: say what it is
            raise _walk_error(exc, self.shown(real)) from None
        finally:
            os.close(fd)

    def _open_root(self) -> int:
        """The root's descriptor, walked from `/` without following a link and checked to be
        the directory this confinement was opened on (device and inode)."""
        fd = os.open("/", DIR_FLAGS)
        try:
            for part in self.root.parts[1:]:
                fd = self._step(fd, part, self.root)
        except Refused:
            raise Refused(self._replaced()) from None
        info = os.fstat(fd)
        if f"{info.st_dev}:{info.st_ino}" != self.identity:
            os.close(fd)
            raise Refused(self._replaced())
        return fd

    def _replaced(self) -> str:
        return f"the target {printable(str(self.root))} was moved or replaced while it was read"

    def _parts(self, real: Path) -> list[str]:
        if real != self.root and not real.is_relative_to(self.root):
            raise OutsideTarget(f"{printable(str(real)[:200])} is outside the target")
        parts = real.relative_to(self.root).parts
        if any(part in (".", "..") for part in parts):
            raise OutsideTarget(f"{self.shown(real)} is outside the target")
        return list(parts)


def _walk_error(exc: OSError, shown: str) -> Refused:
    """What a failed step of the walk means, as a refusal naming the path."""
    if exc.errno == errno.ELOOP:
        return OutsideTarget(
            f"{shown}: a link on the way (changed while it was read); nothing outside the "
            "target is read"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Refused(f"{shown}: permission denied")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NoSuchFile(f"{shown}: no such file")
    return Refused(f"{shown}: cannot open ({exc.strerror})")


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False
