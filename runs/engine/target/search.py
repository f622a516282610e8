"""Searching a target in bounded time: one walk with a limit, grep and glob in linear time.

Patterns the model writes run on RE2, which matches in time linear in the text, so no
pattern (`(\\w+)+!` on a long identifier, `**/**/**/...`) can backtrack for minutes. RE2
has no look-around or backreferences; such a pattern is refused with a sentence saying so.
Every search also stops at a deadline and at an entry limit, and says where it stopped.
A line grep reports must match as redacted (runs.engine.target.secrets), so a pattern cannot be
used to probe a credential one character at a time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re2

from runs.engine.target.confinement import Confinement, Refused, printable
from runs.engine.target.secrets import is_secret_name, redact, redact_name

# Folders no search walks into: tooling caches, dependencies, and git's internals.
SKIP_DIRS = frozenset(
    {
        ".hypothesis",
        ".git",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
    }
)
SHOWN_LINE_CHARS = 200
RE2_MAX_MEM = 32 << 20  # the compiled program's budget; a pattern needing more is refused

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = RE2_MAX_MEM
_REPEATED_STARS = re.compile(r"(?:\*\*/)+")


@dataclass
class Deadline:
    """A search's time budget, checked between files and every few hundred lines."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def expired(self) -> bool:
        return time.monotonic() - self.started > self.seconds


@dataclass(frozen=True, kw_only=True)
class Entry:
    real: Path  # where it leads (symlinks resolved)
    rel: str  # its own path relative to the root, as found
    is_dir: bool


@dataclass
class Walk:
    """Entries under a base, once, depth-first in name order, within a limit and a deadline.
    Directories are listed through descriptors from the confinement's walk and entered with
    no link followed, so a folder swapped for a link is never listed; links that lead out of
    the root are invisible; `stopped` says why it ended early."""

    confine: Confinement
    base: Path
    depth: int | None
    limit: int
    deadline: Deadline
    stopped: str = ""
    visited: int = 0

    def __iter__(self) -> Iterator[Entry]:
        prefix = self.confine.relative(self.base)
        try:
            with self.confine.directory(self.base, listing=True) as fd:
                yield from self._folder(fd, "" if prefix == "." else f"{prefix}/", 0)
        except Refused:
            return  # the base is gone, unreadable or no longer a folder: nothing to list

    def _folder(self, fd: int, prefix: str, level: int) -> Iterator[Entry]:
        """One folder's entries (folders first, then files, each by name), then its folders'."""
        try:
            with os.scandir(fd) as found:
                listed = [(entry.name, _is_dir(entry), entry.is_symlink()) for entry in found]
        except OSError:
            return
        dirs = sorted(item for item in listed if item[1] and item[0] not in SKIP_DIRS)
        files = sorted(item for item in listed if not item[1])
        for name, is_dir, is_link in [*dirs, *files]:
            if self.visited >= self.limit:
                self.stopped = f"stopped after {self.limit} entries"
                return
            if self.visited % 64 == 0 and self.deadline.expired():
                self.stopped = f"stopped at the {self.deadline.seconds:g} s time limit"
                return
            self.visited += 1
            real = self._real(f"{prefix}{name}", is_link)
            if real is not None:
                yield Entry(real=real, rel=f"{prefix}{name}", is_dir=is_dir)
        if self.depth is not None and level + 1 >= self.depth:
            return
        for name, _, is_link in dirs:
            if self.stopped or is_link:
                continue  # links are listed, never entered
            child = self.confine.open_dir_at(fd, name, listing=True)
            if child is None:
                continue
            try:
                yield from self._folder(child, f"{prefix}{name}/", level + 1)
            finally:
                os.close(child)

    def _real(self, rel: str, is_link: bool) -> Path | None:
        """Where an entry leads: itself, or for a link its target when that stays inside."""
        root = self.confine.root
        if not is_link:
            return root / rel
        try:
            real = Path(os.path.realpath(root / rel))
        except (OSError, RuntimeError, ValueError):
            return None
        return real if real.is_relative_to(root) else None  # a link out: invisible


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def compile_pattern(pattern: str) -> Any:
    """A grep pattern as a linear-time RE2 program, or Refused with a sentence."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except (re2.error, UnicodeError) as exc:
        raise Refused(
            f"invalid regular expression {printable(pattern[:100])!r}: {_reason(exc)}. Patterns "
            "run on RE2 (linear time): no look-around, no backreferences, repeats up to 1000"
        ) from None


def compile_glob(pattern: str) -> Any:
    """A glob over relative POSIX paths: `**` spans directories, `*` and `?` stay inside one.
    Repeated `**/` collapse to one; the result runs on RE2, anchored at both ends."""
    out, i = [], 0
    text = _REPEATED_STARS.sub("**/", pattern.removeprefix("./"))
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    try:
        return re2.compile("(?s)^(?:" + "".join(out) + ")$", _OPTIONS)
    except (re2.error, UnicodeError) as exc:
        raise Refused(f"cannot use the glob {printable(pattern[:100])!r}: {_reason(exc)}") from None


def grep_file(
    confine: Confinement, entry: Entry, regex: Any, room: int, max_bytes: int, deadline: Deadline
) -> list[str]:
    """`path:line:text` for the matching lines of one file; secrets, binaries, hard links and
    special files are skipped silently (the model cannot tell a skip from no match)."""
    if room <= 0 or is_secret_name(entry.rel):
        return []
    time.sleep(0)  # between files, let the event loop's thread have the GIL
    try:
        data = confine.read_bytes(entry.real, max_bytes + 1)
    except (Refused, OSError, ValueError):
        return []
    if len(data) > max_bytes:
        return []
    text = data.decode("utf-8", "replace")
    shown = printable(redact_name(entry.rel))
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if number % 256 == 0:
            if deadline.expired():
                break
            time.sleep(0)  # let the event loop's thread have the GIL now and then
        # Whole lines (RE2 is linear, and a cut line fakes `$`). A line is searched again as
        # redacted, and only that counts: a pattern cannot probe a secret character by
        # character, and only the lines that match are redacted (the rule is line by line for
        # everything but keys, which `read_bytes` already redacted over the whole file).
        if regex.search(line) and regex.search(line := redact(line)):
            found.append(f"{shown}:{number}:{line.strip()[:SHOWN_LINE_CHARS]}")
            if len(found) >= room:
                break
    return found


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeError):
        return "it is not valid UTF-8 text"
    raw = exc.args[0] if exc.args else exc
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
