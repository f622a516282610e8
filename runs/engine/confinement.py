"""Path confinement: nothing outside the target; what is secret is runs.engine.secrets' rule.

Every path an agent names is relative to the target root. It is resolved with symlinks
followed and must still lie inside the root's real path; only regular files are opened, with
O_NOFOLLOW | O_NONBLOCK, so a swapped-in FIFO or link can neither block nor escape.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from runs.engine.secrets import PRIVATE_KEY_MARK, is_secret_name

# A NUL in the first 8 KB makes a file binary (git's own rule).
BINARY_SNIFF = 8192


class Refused(Exception):
    """A path or file the agent may not see; the message is safe to show the model."""


class OutsideTarget(Refused):
    """The path leaves the target (absolute, `..`, or a link out of it)."""


class SecretFile(Refused):
    """A secret by name or by content: never shown, never checked."""


class NoSuchFile(Refused):
    """Nothing at that path."""


class Confinement:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve(strict=True)

    def resolve(self, raw: object) -> Path:
        """The real path for an agent's relative path, or Refused."""
        if not isinstance(raw, str):
            raise Refused("path must be a string")
        if "\x00" in raw:
            raise Refused("path contains a NUL byte")
        text = raw.strip() or "."
        if text.startswith(("/", "~", "\\")) or (len(text) > 1 and text[1] == ":"):
            raise OutsideTarget(
                f"{raw!r}: absolute paths are refused; use a path relative to the target"
            )
        real = (self.root / text).resolve()
        if real != self.root and not real.is_relative_to(self.root):
            raise OutsideTarget(f"{raw!r} is outside the target")
        return real

    def relative(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    def check_readable(self, real: Path) -> None:
        """Refuse secrets, special files and anything not a regular file."""
        rel = self.relative(real)
        if is_secret_name(rel):
            raise SecretFile(f"{rel}: secret file, not shown")
        try:
            info = os.stat(real)
        except OSError:
            raise NoSuchFile(f"{rel}: no such file") from None
        if stat.S_ISDIR(info.st_mode):
            raise Refused(f"{rel} is a directory; use list_dir")
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{rel}: not a regular file (device, FIFO or socket), refused")

    def read_bytes(self, real: Path, limit: int) -> bytes:
        """At most `limit` bytes of a checked regular file, or Refused."""
        self.check_readable(real)
        rel = self.relative(real)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise Refused(f"{rel}: cannot open ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise Refused(f"{rel}: not a regular file, refused")
            data = handle.read(limit)
        if PRIVATE_KEY_MARK in data:
            raise SecretFile(f"{rel}: contains a private key, not shown")
        if b"\x00" in data[:BINARY_SNIFF]:
            raise Refused(f"{rel}: binary file, refused")
        return data
