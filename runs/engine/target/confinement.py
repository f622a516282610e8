"""Path confinement: nothing outside the target; what is secret is runs.engine.target.secrets' rule.

Every path an agent names is relative to the target root. It is resolved with symlinks
followed and must still lie inside the root's real path; only regular files with a single
link are opened, with O_NOFOLLOW | O_NONBLOCK, so a swapped-in FIFO or link can neither
block nor escape.

The root itself is checked again at every use, not only at launch: `open_target(run)` fails
with a sentence when the directory the run was launched on has moved, was replaced (by
another directory or by a link) or is no longer under ORCHESTRATOR_ALLOWED_ROOTS, and
`Confinement.verify()` repeats the check before each tool call.

Hard links: a regular file with more than one link is refused. Its other names may be a
secret (`.env`) or lie outside the target, and nothing on the file says which, so such a
file is not read at all; the refusal says so.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from pathlib import Path
from typing import Any

from runs.engine.target import roots
from runs.engine.target.secrets import has_private_key, is_secret_name

# A NUL in the first 8 KB makes a file binary (git's own rule); one anywhere is refused too,
# as no NUL may reach the model's transcript or the database.
BINARY_SNIFF = 8192
MAX_PATH_CHARS = 4096
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
        """The relative path as the model may see it."""
        return printable(self.relative(real))

    def check_readable(self, real: Path) -> os.stat_result:
        """Refuse secrets, hard links, special files and anything not a regular file."""
        rel = self.shown(real)
        if is_secret_name(self.relative(real)):
            raise SecretFile(f"{rel}: secret file, not shown")
        try:
            info = os.stat(real)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise Refused(f"{rel}: permission denied") from None
            raise NoSuchFile(f"{rel}: no such file") from None
        if stat.S_ISDIR(info.st_mode):
            raise Refused(f"{rel} is a directory; use list_dir")
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{rel}: not a regular file (device, FIFO or socket), refused")
        if info.st_nlink > 1:
            raise Refused(f"{rel}: " + HARD_LINK_REFUSAL.format(links=info.st_nlink))
        return info

    def read_bytes(self, real: Path, limit: int) -> bytes:
        """At most `limit` bytes of a checked regular file, or Refused."""
        self.check_readable(real)
        rel = self.shown(real)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise Refused(f"{rel}: cannot open ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise Refused(f"{rel}: not a regular file, refused")
            if info.st_nlink > 1:  # linked between the check and the open
                raise Refused(f"{rel}: " + HARD_LINK_REFUSAL.format(links=info.st_nlink))
            if not self._opened_inside(fd):
                raise OutsideTarget(f"{rel} is outside the target")
            try:
                data = handle.read(limit)
            except OSError as exc:
                raise Refused(f"{rel}: cannot read ({exc.strerror})") from None
        if has_private_key(data):
            raise SecretFile(f"{rel}: contains a private key, not shown")
        if b"\x00" in data:
            raise Refused(f"{rel}: binary file, refused")
        return data

    def _opened_inside(self, fd: int) -> bool:
        """Where the open file really is (a parent swapped for a link between the resolve and
        the open would otherwise go unnoticed). Where /proc is missing, trust the resolve."""
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return True
        return Path(where).is_relative_to(self.root)
