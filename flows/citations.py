"""Citations checked mechanically: every citation-like string gets one graded mark.

Pure Python (no Django). `flows.citation_scan` finds the citations in the forms models and
their tools write; `flows.citation_claims` decides what each one claims and whether that is at
the cited lines; this module reads the files and marks the Markdown so that no citation reads
as more checked than it was. It never opens a file itself: the caller passes a `LineReader`
(the engine's applies its confinement and secret rules), so one module owns what may be read.

The grades, each meaning exactly what it says:
- verified (✓): something the citation claims (its quoted code, or the code spans and
  identifiers its sentence names) was found at the cited lines;
- lines exist: the file and lines exist, but the citation carries nothing checkable;
- flagged: false or unreadable, with the reason (and where a quote really is);
- not checked: looks like a citation but could not be checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from flows.citation_claims import Verdict, judge
from flows.citation_scan import MAX_SCAN_CHARS, Citation, scan

MAX_CHECKED = 1_000  # citations checked per text; the rest are marked "not checked"
MAX_FILES = 200  # distinct files read per text
MARK_VERIFIED = "✓"
MARK_LINES_EXIST = "lines exist, claim not checked"
MAX_WRAPPED = 1_200  # a citation wrapped whole in its link is at most this long

__all__ = [
    "MARK_LINES_EXIST",
    "MARK_VERIFIED",
    "CheckStatus",
    "Citation",
    "CitationCheck",
    "FileIndex",
    "Grade",
    "LineReader",
    "annotate",
    "check",
    "check_all",
    "extract",
    "mark_text",
]


class Grade(StrEnum):
    VERIFIED = "verified"  # something the citation claims was found at the cited lines
    LINES_EXIST = "lines exist"  # nothing checkable: the file and lines exist, no more
    FLAGGED = "flagged"  # false or unreadable, with the reason
    NOT_CHECKED = "not checked"  # looks like a citation but could not be checked


class CheckStatus(StrEnum):
    VERIFIED = "verified"  # a claim of the citation was found at the cited lines
    LINES_EXIST = MARK_LINES_EXIST
    NO_SUCH_FILE = "no such file"
    AMBIGUOUS = "ambiguous file name"
    OUTSIDE_ROOT = "outside the target"
    NO_SUCH_LINES = "no such lines"
    REVERSED = "reversed line range"
    QUOTE_NOT_FOUND = "quoted text not at those lines"
    QUOTE_ELSEWHERE = "quoted text is at other lines"
    SYMBOL_NOT_FOUND = "named code not at those lines"
    SECRET = "secret file, not checked"  # noqa: S105 (a status, not a password)
    UNREADABLE = "not a readable text file"
    TARGET_UNAVAILABLE = "the target could not be opened"
    NOT_CHECKED = "not checked: too many citations"
    UNRESOLVED = "not checked: no file path given"


_GRADES = {
    CheckStatus.VERIFIED: Grade.VERIFIED,
    CheckStatus.LINES_EXIST: Grade.LINES_EXIST,
    CheckStatus.NOT_CHECKED: Grade.NOT_CHECKED,
    CheckStatus.UNRESOLVED: Grade.NOT_CHECKED,
}
_FROM_VERDICT = {
    Verdict.FOUND: CheckStatus.VERIFIED,
    Verdict.NOTHING: CheckStatus.LINES_EXIST,
    Verdict.REVERSED: CheckStatus.REVERSED,
    Verdict.NO_LINES: CheckStatus.NO_SUCH_LINES,
    Verdict.QUOTE_MISSING: CheckStatus.QUOTE_NOT_FOUND,
    Verdict.QUOTE_ELSEWHERE: CheckStatus.QUOTE_ELSEWHERE,
    Verdict.SYMBOL_MISSING: CheckStatus.SYMBOL_NOT_FOUND,
}


class LineReader(Protocol):
    """Given a cited path as written, the file's lines, or why it cannot be read."""

    def __call__(self, cited_path: str, /) -> Sequence[str] | CheckStatus: ...


@runtime_checkable
class FileIndex(Protocol):
    """A reader that can also say which readable files carry a name (for bare file names).

    Optional: a reader without it simply leaves a bare name it cannot open unresolved.
    """

    def files_named(self, name: str, /) -> Sequence[str]: ...


@dataclass(frozen=True, kw_only=True)
class CitationCheck:
    citation: Citation
    status: CheckStatus
    detail: str = ""  # the reason in full where the status alone does not say it
    resolved: str = ""  # the file actually read, when the citation named it another way

    @property
    def grade(self) -> Grade:
        return _GRADES.get(self.status, Grade.FLAGGED)

    @property
    def verified(self) -> bool:
        return self.grade == Grade.VERIFIED

    @property
    def flagged(self) -> bool:
        return self.grade == Grade.FLAGGED

    @property
    def reason(self) -> str:
        return self.detail or self.status.value

    @property
    def path(self) -> str:
        """The file read: the resolved one for a bare name, else the path as cited."""
        return self.resolved or self.citation.path


def extract(text: str) -> list[Citation]:
    """Every citation-like string in the text, in order."""
    return scan(text)


def check(citation: Citation, lines: Sequence[str]) -> CheckStatus:
    """The status of one citation against its file's lines."""
    return _FROM_VERDICT[judge(citation, lines)[0]]


def check_all(text: str, reader: LineReader) -> list[CitationCheck]:
    """Every citation in the text with its grade; a reader's failure fails one citation."""
    files: dict[str, tuple[Sequence[str] | CheckStatus, str, str]] = {}
    checks = []
    for index, citation in enumerate(extract(text)):
        if index >= MAX_CHECKED:
            checks.append(CitationCheck(citation=citation, status=CheckStatus.NOT_CHECKED))
            continue
        if not citation.path:
            checks.append(CitationCheck(citation=citation, status=CheckStatus.UNRESOLVED))
            continue
        lines, detail, resolved = _read(citation.path, reader, files)
        if isinstance(lines, CheckStatus):
            checks.append(
                CitationCheck(citation=citation, status=lines, detail=detail, resolved=resolved)
            )
            continue
        verdict, why = judge(citation, lines)
        checks.append(
            CitationCheck(
                citation=citation, status=_FROM_VERDICT[verdict], detail=why, resolved=resolved
            )
        )
    return checks


def mark_text(item: CitationCheck) -> str:
    """The words of a check's mark (the ✓ alone for a verified one)."""
    if item.grade == Grade.VERIFIED:
        return MARK_VERIFIED
    if item.grade == Grade.LINES_EXIST:
        return MARK_LINES_EXIST
    if item.grade == Grade.NOT_CHECKED:
        return (
            item.reason if item.reason.startswith("not checked") else f"not checked: {item.reason}"
        )
    return f"unverified: {item.reason}"


def annotate(
    text: str, checks: Iterable[CitationCheck], *, link: Callable[[int], str | None] | None = None
) -> str:
    """Mark each citation in place with its grade.

    `link`, given a check's index, may return a link target: the whole citation and its mark
    then link there (only the mark, where the citation cannot be wrapped in a link).
    """
    inline: dict[int, list[tuple[int, CitationCheck]]] = {}
    blocks: dict[int, list[tuple[int, CitationCheck]]] = {}
    for index, item in enumerate(checks):
        where = blocks if item.citation.in_code_block else inline
        where.setdefault(item.citation.mark_offset, []).append((index, item))
    pieces = []
    cursor = 0
    for offset in sorted(inline.keys() | blocks.keys()):
        group = inline.get(offset, [])
        wrapped = _wrappable(text, cursor, group, link)
        if wrapped is not None:
            index, item, target, start = wrapped
            pieces.append(text[cursor:start])
            words = mark_text(item)
            shown = words if item.grade == Grade.VERIFIED else f"**[{words}]**"
            pieces.append(f"[{text[start:offset]} {shown}]({target})")
            cursor = offset
            if offset in blocks:
                pieces.append(_block_note(blocks[offset], link))
            continue
        pieces.append(text[cursor:offset])
        if offset in inline:
            pieces.append(" " + _marks(inline[offset], link, labelled=len(inline[offset]) > 1))
        if offset in blocks:
            pieces.append(_block_note(blocks[offset], link))
        cursor = offset
    pieces.append(text[cursor:])
    if len(text) > MAX_SCAN_CHARS:
        pieces.append(
            f"\n\n**[not checked: citations after the first {MAX_SCAN_CHARS:,} characters]**\n"
        )
    return "".join(pieces)


def _wrappable(
    text: str,
    cursor: int,
    group: list[tuple[int, CitationCheck]],
    link: Callable[[int], str | None] | None,
) -> tuple[int, CitationCheck, str, int] | None:
    """A lone citation whose written form can become a link as a whole: its index, its check
    and the link target; None where it is inside a link already or spans brackets or lines."""
    if link is None or len(group) != 1:
        return None
    index, item = group[0]
    target = link(index)
    start, end = item.citation.start_offset, item.citation.mark_offset
    while start > cursor and start > end - MAX_WRAPPED and text[start - 1] in "`*_":
        start -= 1  # the code span or emphasis the citation is written in
    written = text[start:end]
    if target is None or start < cursor or not written or any(c in written for c in "[]()\n"):
        return None
    if written.count("`") % 2 or written.count("*") % 2:
        return None
    if "[" in text[max(0, start - 2) : start] or "](" in text[end : end + 2]:
        return None
    return index, item, target, start


def _mark(index: int, item: CitationCheck, link: Callable[[int], str | None] | None) -> str:
    words = mark_text(item)
    target = link(index) if link is not None else None
    if item.grade == Grade.VERIFIED:
        return f"[{words}]({target})" if target else words
    shown = f"[{words}]"
    return f"**[{shown}]({target})**" if target else f"**{shown}**"


def _marks(
    indexed: list[tuple[int, CitationCheck]],
    link: Callable[[int], str | None] | None,
    *,
    labelled: bool,
) -> str:
    if not labelled or len({(item.grade, item.reason) for _, item in indexed}) == 1:
        return _mark(indexed[0][0], indexed[0][1], link)
    return " ".join(f"`{item.citation.label}` {_mark(i, item, link)}" for i, item in indexed)


def _block_note(
    indexed: list[tuple[int, CitationCheck]], link: Callable[[int], str | None] | None
) -> str:
    """Code blocks are shown as written; their citations are marked in a line after them."""
    marks = ", ".join(f"`{item.citation.label}` {_mark(i, item, link)}" for i, item in indexed)
    close = indexed[0][1].citation.close_fence
    return f"{close}\n\n_Citations in the code block above:_ {marks}\n"


def _read(
    path: str,
    reader: LineReader,
    files: dict[str, tuple[Sequence[str] | CheckStatus, str, str]],
) -> tuple[Sequence[str] | CheckStatus, str, str]:
    """(lines or status, detail, resolved path) for a cited path, read once per text."""
    if path in files:
        return files[path]
    if len(files) >= MAX_FILES:
        return CheckStatus.NOT_CHECKED, "not checked: too many files cited", ""
    written = normal_path(path)
    result = _ask(reader, written)
    found: tuple[Sequence[str] | CheckStatus, str, str] = (
        result,
        "",
        written if written != path else "",
    )
    if result == CheckStatus.NO_SUCH_FILE and isinstance(reader, FileIndex):
        found = _by_name(written, reader) or found
    files[path] = found
    return found


def _by_name(
    written: str, reader: LineReader
) -> tuple[Sequence[str] | CheckStatus, str, str] | None:
    """A bare name (or a path's tail) that exactly one readable file in the target has."""
    if written.startswith(("/", "~")):
        return None
    tail = written.removeprefix("./")
    try:
        named = reader.files_named(tail.rsplit("/", 1)[-1])  # type: ignore[attr-defined]
    except Exception:  # a listing that fails leaves the citation as the reader said
        return None
    matches = sorted({p for p in named if p == tail or p.endswith("/" + tail)})
    if len(matches) == 1:
        return _ask(reader, matches[0]), "", matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:3]) + (", ..." if len(matches) > 3 else "")
        name = tail.rsplit("/", 1)[-1]
        return (
            CheckStatus.AMBIGUOUS,
            f"ambiguous: {len(matches)} files named {name} ({shown})",
            "",
        )
    return None


def _ask(reader: LineReader, path: str) -> Sequence[str] | CheckStatus:
    try:
        return reader(path)
    except Exception:  # a reader must not raise; if it does, only this citation fails
        return CheckStatus.UNREADABLE


def normal_path(path: str) -> str:
    """A cited path as the target names it: / for \\, %20 decoded, no file:// prefix."""
    path = path.removeprefix("file://")
    if "%" in path:
        path = unquote(path)
    if "\\" in path and not path.startswith("\\\\"):
        path = path.replace("\\", "/")
    return path
