"""The shapes the citation scanner reads and writes: a citation, a fenced block, a line of
text with its code spans and links, and the tables whose File and Line columns cite."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from flows.citation_tokens import Token, line_range

_BACKTICKS = re.compile(r"`+")
# [label](target) on one line; label and target cannot nest, so each character is looked at
# a bounded number of times.
_LINK = re.compile(r"\[[^\[\]\n]{0,300}\]\([^()\s]{1,1000}(?:\s+\"[^\"\n]{0,200}\")?\)")

# | --- | :---: |, written so that no two parts can match the same spaces (no backtracking)
_TABLE_SEPARATOR = re.compile(
    r"[ \t]*(?:\|[ \t]*)?:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*(?:\|[ \t]*)?"
)

FILE_HEADERS = frozenset({"file", "path", "file path", "filepath", "location", "where", "source"})
LINE_HEADERS = frozenset({"line", "lines", "line(s)", "ln", "line no.", "line number", "line no"})


@dataclass(frozen=True, kw_only=True)
class Citation:
    """One citation-like string: the cited path as written and the lines it names."""

    path: str  # as written (a file:// prefix dropped), e.g. "./app/auth.py" or "/abs/x.py"
    start: int
    end: int
    quote: str | None
    form: str  # how it was written (colon, anchor, line-of, table, ...): for statistics
    start_offset: int  # where the citation-like string begins in the text
    end_offset: int  # where its mark goes: after it, its code span, link or emphasis
    in_code_block: bool = False  # then the mark goes in a note after the block
    close_fence: str = ""  # for a block left open: the fence that closes it before the note
    mark_at: int = -1  # where the mark goes when not at end_offset (a block's close)
    block: tuple[str, ...] = ()  # a code block shown as the cited lines
    anywhere: bool = False  # the block's lines count from the block's own first line
    claims: tuple[tuple[str, bool], ...] = ()  # the sentence's code (and whether it is ours)
    near: bool = False  # "around line 40": a few lines of slack
    context_start: int = -1  # where the citation's claims begin, when not its sentence

    @property
    def mark_offset(self) -> int:
        return self.end_offset if self.mark_at < 0 else self.mark_at

    @property
    def label(self) -> str:
        lines = str(self.start) if self.start == self.end else f"{self.start}-{self.end}"
        return f"{self.path}:{lines}"


@dataclass(frozen=True, kw_only=True)
class Fence:
    opening: int  # where the opening fence's line starts
    content_start: int
    close_end: int  # where the mark of the block's citations goes
    close_fence: str
    info: str
    body: tuple[str, ...]


@dataclass(kw_only=True)
class TextLine:
    start: int
    end: int
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)  # code spans
    links: list[tuple[int, int]] = field(default_factory=list)


def table_state(
    text: str,
    table: tuple[int | None, int | None] | None,
    previous: TextLine | None,
    raw: str,
) -> tuple[int | None, int | None] | None:
    """Inside a table with File and Line columns: their indexes; else None."""
    if "|" not in raw:
        return None
    if previous is not None and _TABLE_SEPARATOR.fullmatch(raw):
        headers = [c.strip(" *`").lower() for c in _cells(text, previous)]
        files = [i for i, h in enumerate(headers) if h in FILE_HEADERS]
        lines = [i for i, h in enumerate(headers) if h in LINE_HEADERS]
        if files and lines:
            return files[0], lines[0]
        return None
    return table


def table_row(
    text: str, line: TextLine, tokens: list[Token], table: tuple[int | None, int | None]
) -> tuple[str, int, int, int, int] | None:
    """| `app.py` | 12-20 | ... |: a file cell and a line cell make one citation:
    (path, first, last, start, end)."""
    file_column, line_column = table
    bounds = _cell_bounds(text, line)
    if file_column is None or line_column is None:
        return None
    if len(bounds) <= max(file_column, line_column):
        return None
    in_file = [t for t in tokens if _within(t, bounds[file_column])]
    in_line = [t for t in tokens if _within(t, bounds[line_column])]
    paths = [t for t in in_file if t.kind == "path" and not t.used]
    numbers = [t for t in in_line if t.kind in ("num", "lnum") and not t.used]
    if len(paths) != 1 or not numbers:
        return None
    first, last = line_range(numbers[0])
    paths[0].used = numbers[0].used = True
    start = min(paths[0].start, numbers[0].start)
    end = max(paths[0].end, numbers[0].end)
    return paths[0].text, first, last, start, end


def _cells(text: str, line: TextLine) -> list[str]:
    return [text[a:b] for a, b in _cell_bounds(text, line)]


def _cell_bounds(text: str, line: TextLine) -> list[tuple[int, int]]:
    """The [start, end) of each table cell of a `| a | b |` line (escaped pipes kept)."""
    bounds = []
    start = line.start
    while start < line.end and text[start] in " \t":
        start += 1
    if start < line.end and text[start] == "|":
        start += 1
    position = start
    while True:
        bar = text.find("|", position, line.end)
        if bar > 0 and text[bar - 1] == "\\":
            position = bar + 1
            continue
        if bar == -1:
            if text[start : line.end].strip():
                bounds.append((start, line.end))
            return bounds
        bounds.append((start, bar))
        start = position = bar + 1


def _within(token: Token, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= token.start and token.end <= bounds[1]


def prepare(text: str, line: TextLine) -> None:
    """The line's code spans (CommonMark pairing of equal backtick runs) and links."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text, line.start, line.end)]
    following: dict[int, int] = {}
    next_same: list[int | None] = [None] * len(runs)
    for index in range(len(runs) - 1, -1, -1):
        length = runs[index][1] - runs[index][0]
        next_same[index] = following.get(length)
        following[length] = index
    index = 0
    while index < len(runs):
        close = next_same[index]
        if close is None:
            index += 1
            continue
        line.spans.append((runs[index][0], runs[index][1], runs[close][0], runs[close][1]))
        index = close + 1
    line.links = [(m.start(), m.end()) for m in _LINK.finditer(text, line.start, line.end)]


def closes(candidate: str, fence: str) -> bool:
    return candidate[0] == fence[0] and len(candidate) >= len(fence)


def enclosing(
    items: list[tuple[int, int]] | list[tuple[int, int, int, int]], offset: int
) -> tuple[int, ...] | None:
    """The last of the sorted, non-overlapping items that starts at or before offset."""
    index = bisect.bisect_right(items, (offset, float("inf"))) - 1
    return items[index] if index >= 0 else None
