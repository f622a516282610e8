"""Citations checked mechanically: every citation-like string is verified or visibly flagged.

Pure Python (no Django). `flows.citation_scan` finds the citations in the forms models
write; this module checks each against the target's files and marks the Markdown so that no
unchecked citation reads as verified. It never opens a file itself: the caller passes a
`LineReader` (the engine's applies its confinement and secret rules), so one module owns
what may be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from flows.citation_scan import MAX_SCAN_CHARS, Citation, scan

MAX_CHECKED = 1_000  # citations checked per text; the rest are flagged "not checked"
MAX_FILES = 200  # distinct files read per text
MAX_QUOTE_CHARS = 2_000
MARK_VERIFIED = "✓"
QUOTE_SLACK = 2  # lines either side of the cited ones where a quote may sit

__all__ = [
    "MARK_VERIFIED",
    "CheckStatus",
    "Citation",
    "CitationCheck",
    "LineReader",
    "annotate",
    "check",
    "check_all",
    "extract",
]


class CheckStatus(StrEnum):
    VERIFIED = "verified"  # inside the root, the lines exist, and the quote (if any) is there
    NO_SUCH_FILE = "no such file"
    OUTSIDE_ROOT = "outside the target"
    NO_SUCH_LINES = "no such lines"
    QUOTE_NOT_FOUND = "quoted text not at those lines"
    SECRET = "secret file, not checked"  # noqa: S105 (a status, not a password)
    UNREADABLE = "not a readable text file"
    TARGET_UNAVAILABLE = "the target could not be opened"
    NOT_CHECKED = "not checked: too many citations"


class LineReader(Protocol):
    """Given a cited path as written, the file's lines, or why it cannot be read."""

    def __call__(self, cited_path: str, /) -> Sequence[str] | CheckStatus: ...


@dataclass(frozen=True, kw_only=True)
class CitationCheck:
    citation: Citation
    status: CheckStatus

    @property
    def verified(self) -> bool:
        return self.status == CheckStatus.VERIFIED


def extract(text: str) -> list[Citation]:
    """Every citation-like string in the text, in order."""
    return scan(text)


def check(citation: Citation, lines: Sequence[str]) -> CheckStatus:
    """Do the cited lines exist, and does the quoted text sit at (or next to) them?"""
    if citation.start < 1 or citation.end > len(lines):
        return CheckStatus.NO_SUCH_LINES
    if not citation.quote:
        return CheckStatus.VERIFIED
    window = lines[max(0, citation.start - 1 - QUOTE_SLACK) : citation.end + QUOTE_SLACK]
    # Models quote loosely: whitespace collapsed, "..." eliding a middle part, and a line or
    # two of drift (an off-by-one line number is common and harmless).
    joined = _squash(" ".join(window))
    pieces = [_squash(p) for p in _elisions(citation.quote[:MAX_QUOTE_CHARS])]
    pieces = [p for p in pieces if p]
    if not pieces:
        return CheckStatus.VERIFIED
    position = 0
    for piece in pieces:
        found = joined.find(piece, position)
        if found == -1:
            return CheckStatus.QUOTE_NOT_FOUND
        position = found + len(piece)
    return CheckStatus.VERIFIED


def check_all(text: str, reader: LineReader) -> list[CitationCheck]:
    """Every citation in the text with its status; a reader's failure fails one citation."""
    files: dict[str, Sequence[str] | CheckStatus] = {}
    checks = []
    for index, citation in enumerate(extract(text)):
        if index >= MAX_CHECKED:
            status = CheckStatus.NOT_CHECKED
        else:
            lines = _read(citation.path, reader, files)
            status = lines if isinstance(lines, CheckStatus) else check(citation, lines)
        checks.append(CitationCheck(citation=citation, status=status))
    return checks


def annotate(
    text: str, checks: Iterable[CitationCheck], *, link: Callable[[int], str | None] | None = None
) -> str:
    """Mark each citation in place: ✓ when verified, a visible label when not.

    `link`, given a check's index, may return a link target: the ✓ then links there.
    """
    inline: dict[int, list[tuple[int, CitationCheck]]] = {}
    blocks: dict[int, list[tuple[int, CitationCheck]]] = {}
    for index, item in enumerate(checks):
        where = blocks if item.citation.in_code_block else inline
        where.setdefault(item.citation.end_offset, []).append((index, item))
    pieces = []
    cursor = 0
    for offset in sorted(inline.keys() | blocks.keys()):
        pieces.append(text[cursor:offset])
        if offset in inline:
            pieces.append(_inline_mark(inline[offset], link))
        if offset in blocks:
            pieces.append(_block_note(blocks[offset], link))
        cursor = offset
    pieces.append(text[cursor:])
    if len(text) > MAX_SCAN_CHARS:
        pieces.append(
            f"\n\n**[unverified: citations after the first {MAX_SCAN_CHARS:,} characters "
            "were not checked]**\n"
        )
    return "".join(pieces)


def _verified_mark(index: int, link: Callable[[int], str | None] | None) -> str:
    target = link(index) if link is not None else None
    return f"[{MARK_VERIFIED}]({target})" if target else MARK_VERIFIED


def _inline_mark(
    indexed: list[tuple[int, CitationCheck]], link: Callable[[int], str | None] | None
) -> str:
    group = [item for _, item in indexed]
    broken = [item for item in group if not item.verified]
    if not broken:
        return " " + _verified_mark(indexed[0][0], link)
    if len(group) == 1:
        return f" **[unverified: {broken[0].status.value}]**"
    labels = "; ".join(f"{item.citation.label}: {item.status.value}" for item in broken)
    return f" **[unverified: {labels}]**"


def _block_note(
    indexed: list[tuple[int, CitationCheck]], link: Callable[[int], str | None] | None
) -> str:
    """Code blocks are shown as written; their citations are marked in a line after them."""
    group = [item for _, item in indexed]
    marks = ", ".join(
        f"`{item.citation.label}` "
        + (
            _verified_mark(index, link)
            if item.verified
            else f"**[unverified: {item.status.value}]**"
        )
        for index, item in indexed
    )
    close = group[0].citation.close_fence
    return f"{close}\n\n_Citations in the code block above:_ {marks}\n"


def _read(
    path: str, reader: LineReader, files: dict[str, Sequence[str] | CheckStatus]
) -> Sequence[str] | CheckStatus:
    if path in files:
        return files[path]
    if len(files) >= MAX_FILES:
        return CheckStatus.NOT_CHECKED
    try:
        result = reader(path)
    except Exception:  # a reader must not raise; if it does, only this citation fails
        result = CheckStatus.UNREADABLE
    files[path] = result
    return result


def _elisions(quote: str) -> list[str]:
    """The parts of a quote around `...` / `…` elisions, ends trimmed of dots and spaces."""
    return [part.strip(". ") for part in quote.replace("…", "...").split("...")]


def _squash(text: str) -> str:
    return " ".join(text.split())
