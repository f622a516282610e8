"""Citations checked mechanically: every `path:line` must exist in the target, quote included.

Pure Python (no Django): give it the target root and some Markdown; it finds the citations,
checks each against the files, and marks the Markdown so that no unchecked citation reads as
verified.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# `path/to/file.ext:12` or `path:12-20` in backticks, optionally followed on the same line by
# a quoted `text` that should appear at those lines.
_CITATION = re.compile(
    r"`(?P<path>[A-Za-z0-9_.\-/]*[A-Za-z0-9_\-]\.[A-Za-z0-9_]+|[A-Za-z0-9_.\-/]*Makefile"
    r"|[A-Za-z0-9_.\-/]*Dockerfile):(?P<start>\d{1,7})(?:-(?P<end>\d{1,7}))?`"
    r"(?:[^\n`]{0,12}`(?![A-Za-z0-9_.\-/]+:\d)(?P<quote>[^`\n]{3,200})`)?"
)
MAX_FILE_BYTES = 4_000_000
MARK_VERIFIED = "✓"


class CheckStatus(StrEnum):
    VERIFIED = "verified"  # inside the root, the lines exist, and the quote (if any) is there
    NO_SUCH_FILE = "no such file"
    OUTSIDE_ROOT = "outside the target"
    NO_SUCH_LINES = "no such lines"
    QUOTE_NOT_FOUND = "quoted text not at those lines"
    UNREADABLE = "not a readable text file"


@dataclass(frozen=True, kw_only=True)
class Citation:
    path: str
    start: int
    end: int
    quote: str | None
    end_offset: int  # where the closing backtick of `path:line` sits in the text, plus one

    @property
    def label(self) -> str:
        lines = str(self.start) if self.start == self.end else f"{self.start}-{self.end}"
        return f"{self.path}:{lines}"


@dataclass(frozen=True, kw_only=True)
class CitationCheck:
    citation: Citation
    status: CheckStatus

    @property
    def verified(self) -> bool:
        return self.status == CheckStatus.VERIFIED


def extract(text: str) -> list[Citation]:
    citations = []
    for match in _CITATION.finditer(text):
        start = int(match["start"])
        end = int(match["end"] or start)
        citations.append(
            Citation(
                path=match["path"],
                start=start,
                end=max(start, end),
                quote=match["quote"],
                end_offset=match.end("end" if match["end"] else "start") + 1,
            )
        )
    return citations


def check(citation: Citation, root: Path, cache: dict[str, list[str] | CheckStatus]) -> CheckStatus:
    lines = _lines(citation.path, root, cache)
    if isinstance(lines, CheckStatus):
        return lines
    if citation.start < 1 or citation.end > len(lines):
        return CheckStatus.NO_SUCH_LINES
    if citation.quote:
        # Models quote loosely: compare with whitespace collapsed, over the cited lines and
        # two either side (an off-by-one line number is common and harmless).
        window = lines[max(0, citation.start - 3) : citation.end + 2]
        wanted = _squash(citation.quote.strip("…. "))
        if (
            wanted
            and not any(wanted in _squash(line) for line in window)
            and (wanted not in _squash(" ".join(window)))
        ):
            return CheckStatus.QUOTE_NOT_FOUND
    return CheckStatus.VERIFIED


def check_all(text: str, root: Path) -> list[CitationCheck]:
    cache: dict[str, list[str] | CheckStatus] = {}
    return [CitationCheck(citation=c, status=check(c, root, cache)) for c in extract(text)]


def annotate(text: str, checks: Iterable[CitationCheck]) -> str:
    """Mark each citation in place: ✓ when verified, a visible label when not."""
    pieces = []
    cursor = 0
    for item in sorted(checks, key=lambda c: c.citation.end_offset):
        offset = item.citation.end_offset
        pieces.append(text[cursor:offset])
        if item.verified:
            pieces.append(f" {MARK_VERIFIED}")
        else:
            pieces.append(f" **[unverified: {item.status.value}]**")
        cursor = offset
    pieces.append(text[cursor:])
    return "".join(pieces)


def _lines(
    relative: str, root: Path, cache: dict[str, list[str] | CheckStatus]
) -> list[str] | CheckStatus:
    if relative in cache:
        return cache[relative]
    cache[relative] = result = _read_lines(relative, root)
    return result


def _read_lines(relative: str, root: Path) -> list[str] | CheckStatus:
    if relative.startswith(("/", "~")) or "\x00" in relative:
        return CheckStatus.OUTSIDE_ROOT
    real_root = root.resolve()
    path = (real_root / relative.removeprefix("./")).resolve()
    if not path.is_relative_to(real_root):
        return CheckStatus.OUTSIDE_ROOT
    try:
        info = path.stat()
    except OSError:
        return CheckStatus.NO_SUCH_FILE
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
        return CheckStatus.UNREADABLE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES)
    except OSError:
        return CheckStatus.UNREADABLE
    if b"\x00" in data[:8192]:
        return CheckStatus.UNREADABLE
    return data.decode("utf-8", errors="replace").splitlines()


def _squash(text: str) -> str:
    return " ".join(text.split())
