"""The lines a citation names, with a little context and the quote located: what one click
on a verified citation shows. Pure text: the caller reads the file (through its confinement)
and redacts each line before anything is kept."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

from flows.citation_claims import NEAR_SLACK as QUOTE_SLACK
from flows.citation_scan import Citation

CONTEXT_LINES = 3  # shown either side of the cited lines
MAX_CITED_LINES = 40  # a longer range keeps its first lines and says how many were left
MAX_LINE_CHARS = 400
MAX_QUOTE_PIECE_CHARS = 400


def file_digest(lines: Sequence[str]) -> str:
    """A digest of a file's lines as the citation reader returned them."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "replace") + b"\n")
    return digest.hexdigest()


def excerpt(
    citation: Citation, lines: Sequence[str], *, redact: Callable[[str], str]
) -> dict[str, Any]:
    """The cited lines with context, each redacted and capped, and where the quote sits."""
    end = min(citation.end, citation.start + MAX_CITED_LINES - 1, len(lines))
    first = max(1, citation.start - CONTEXT_LINES)
    last = min(len(lines), end + CONTEXT_LINES)
    shown = [_capped(redact(lines[number - 1])) for number in range(first, last + 1)]
    marks = _quote_marks(citation, shown, first)
    return {
        "first": first,
        "lines": shown,
        "start": citation.start,
        "end": citation.end,
        "cited_end": end,
        "lines_left_out": max(0, citation.end - end),
        "marks": marks,
        "digest": file_digest(lines),
    }


def segments(text: str, spans: Sequence[Sequence[int]]) -> list[tuple[str, bool]]:
    """A line cut into (text, highlighted) runs by the quote's spans on it."""
    pieces: list[tuple[str, bool]] = []
    cursor = 0
    for start, end in sorted((int(s), int(e)) for s, e in spans):
        start, end = max(start, cursor), min(end, len(text))
        if start >= end:
            continue
        if start > cursor:
            pieces.append((text[cursor:start], False))
        pieces.append((text[start:end], True))
        cursor = end
    if cursor < len(text) or not pieces:
        pieces.append((text[cursor:], False))
    return pieces


def _capped(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " …"


def _quote_marks(citation: Citation, shown: list[str], first: int) -> list[list[int]]:
    """[line number, start, end] for each quote piece found on one line near the cited ones.

    A quote that spans lines is not located piece by piece; the cited lines are still marked.
    """
    if not citation.quote:
        return []
    pieces = [p.strip(". ") for p in citation.quote.replace("…", "...").split("...")]
    patterns = [
        re.compile(r"\s+".join(re.escape(word) for word in piece.split()))
        for piece in pieces
        if piece.strip() and len(piece) <= MAX_QUOTE_PIECE_CHARS
    ]
    low, high = citation.start - QUOTE_SLACK, citation.end + QUOTE_SLACK
    marks = []
    for offset, text in enumerate(shown):
        number = first + offset
        if not low <= number <= high:
            continue
        for pattern in patterns:
            found = pattern.search(text)
            if found and found.end() > found.start():
                marks.append([number, found.start(), found.end()])
    return marks
