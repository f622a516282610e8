"""Which claims a citation carries: the code spans and names of its sentence, clause by clause.

A sentence's names belong to the citation nearest them in their own clause ("`DB_PATH` in db.py:5
and `DATABASE` in settings.py:4"); a name its clause denies or proposes ("no `csrf_token`",
"should use `hmac.new`") is not claimed to be at the lines. `flows.citation_claims` then judges
the claims against the cited lines.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from flows.citation_claims import MAX_CLAIMS, NEAR, NEGATED, sentence_claims
from flows.citation_tokens import is_spaced_path

if TYPE_CHECKING:
    from flows.citation_layout import Citation, Fence

_ABSENT_AFTER = re.compile(r"n't\b|\b(?:not|no longer|missing|absent|never|nowhere)\b", re.I)
_SPACED = re.compile(
    r"(?P<path>[^:#`\n]{1,300}\.[A-Za-z0-9]{1,10})"
    r"(?::L?(?P<a>\d{1,9})(?:\s?[-\u2013\u2014]\s?L?(?P<b>\d{1,9}))?|#L(?P<c>\d{1,9})(?:-L?(?P<d>\d{1,9}))?)"
)
_FIELD_START = re.compile(
    r"[ \t>]*(?:(?:[-*+]|\d{1,3}[.)])[ \t]+)?[*_]{0,2}(?:file|path|location|where|source|lines?)"
    r"[*_]{0,2}[ \t]*:",
    re.I,
)
_BREAK = re.compile(r"[.!?](?=\s)")
_CLAUSE_BREAK = re.compile(
    r"[,;]|[.!?](?=\s)|\n\n|\s(?:and|but|while|whereas|whilst|or)\s|\s[\u2014\u2013-]\s"
)
_BLOCK_LINE = re.compile(r"\s*(?:[-*+#>|]|\d{1,3}[.)]|```|~~~)")
MAX_CONTEXT_CHARS = 2_000
CLAIM_WINDOW = 400  # characters either side of a citation where its sentence's claims count
BUCKET = 1_024  # claims are read once per stretch of this many characters
MAX_PEERS = 50
CLAUSE_CHARS = 160  # how far a name's clause is read for a negating word


def spaced_cite(content: str) -> tuple[str, int, int] | None:
    """`monthly report.py:12` in a code span: a path with spaces and its lines."""
    match = _SPACED.fullmatch(content)
    if match is None:
        return None
    path = match["path"]
    if not is_spaced_path(path):
        return None
    first = int(match["a"] or match["c"])
    last = int(match["b"] or match["d"] or first)
    return path, first, last


def attach_claims(text: str, citations: list[Citation], fences: Sequence[Fence]) -> list[Citation]:
    """Each citation with the claims it can be checked by (its sentence's code, a block).

    Linear in the text: each line's sentence breaks and each stretch's claims are read once,
    and a citation looks only at a bounded window of its sentence.
    """
    reading = _Reading(text, citations)
    openings = {f.opening: f for f in fences}
    result = []
    for index, citation in enumerate(citations):
        if citation.in_code_block or citation.block:
            result.append(citation)
            continue
        start, end = reading.context(citation)
        peers = reading.peers(start, end) or [index]
        claims = tuple(
            (
                claim,
                reading.nearest(where, peers, citations) == index
                and not reading.denied(claim, where),
            )
            for claim, where in reading.claims(start, end)
        )
        before = text[max(start, citation.start_offset - 24) : citation.start_offset]
        result.append(
            replace(
                citation,
                claims=claims,
                near=NEAR.search(before) is not None,
                block=_following_block(text, citation, openings),
            )
        )
    return result


class _Reading:
    """What attach_claims reads once per text: citation spans, sentence breaks, claims."""

    def __init__(self, text: str, citations: list[Citation]) -> None:
        self.text = text
        order = sorted(range(len(citations)), key=lambda i: citations[i].start_offset)
        self.order = order
        self.starts = [citations[i].start_offset for i in order]
        self.spans = sorted(
            (c.start_offset, max(c.end_offset, c.start_offset + 1)) for c in citations
        )
        self.breaks: dict[int, list[int]] = {}
        # (start, end) of each clause break: commas, semicolons, "and", sentence ends
        self.clause_breaks = [(m.start(), m.end()) for m in _CLAUSE_BREAK.finditer(text)]
        self.denials: dict[int, bool] = {}
        self.bucket_claims: dict[int, list[tuple[str, int]]] = {}

    def context(self, citation: Citation) -> tuple[int, int]:
        """The citation's sentence (or row, or field group), cut to a window around it."""
        start, end = _context(self.text, citation, self._breaks)
        at, mark = citation.start_offset, max(citation.mark_offset, citation.start_offset)
        return max(start, at - CLAIM_WINDOW), min(end, mark + CLAIM_WINDOW)

    def peers(self, start: int, end: int) -> list[int]:
        low = bisect.bisect_left(self.starts, start)
        high = bisect.bisect_left(self.starts, end)
        return self.order[low:high][:MAX_PEERS]

    def claims(self, start: int, end: int) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for bucket in range(start // BUCKET, end // BUCKET + 1):
            if bucket not in self.bucket_claims:
                low, high = bucket * BUCKET, min(len(self.text), (bucket + 1) * BUCKET)
                self.bucket_claims[bucket] = sentence_claims(self.text, low, high, self._overlap)
            found += [c for c in self.bucket_claims[bucket] if start <= c[1] < end]
        return found[:MAX_CLAIMS]

    def nearest(self, where: int, peers: list[int], citations: list[Citation]) -> int:
        """The citation a claim at `where` belongs to: the nearest one in its own clause.

        "`DB_PATH` in db.py:5 and `DATABASE` in settings.py:4": `DATABASE` is nearer the first
        citation's end, but "and" stands between them, so it is the second one's. Only the
        citations either side of the claim can be nearest (farther ones have as many breaks
        between), so each claim costs two looks however many citations its sentence has.
        """
        at = bisect.bisect_right(peers, where, key=lambda i: citations[i].start_offset)
        sides = [peers[k] for k in (at - 1, at) if 0 <= k < len(peers)]

        def distance(index: int) -> tuple[bool, int]:
            cited = citations[index]
            low, high = sorted((where, cited.start_offset))
            if where > cited.start_offset:
                low = min(where, max(cited.mark_offset, cited.start_offset))
            return self._clause_break(low, high), high - low

        return min(sides, key=distance)

    def denied(self, claim: str, where: int) -> bool:
        """Is the name said to be absent or proposed ("no `csrf_token`", "should use `x`")?

        Read in the name's own clause only: "`sign_payload` signs with `hashlib.md5`; use
        `hashlib.sha256`" excuses sha256, not md5. After the name only words that deny it
        count ("`x` is missing"): in "`md5` instead of `sha256`" the claim is md5.
        """
        if where in self.denials:
            return self.denials[where]
        text = self.text
        found = text.find(claim, where, where + len(claim) + 8)
        after = found + len(claim) if found != -1 else where + 1
        low = max(0, where - CLAUSE_CHARS)
        index = bisect.bisect_left(self.clause_breaks, (where, -1)) - 1
        if index >= 0 and self.clause_breaks[index][0] >= low:
            low = self.clause_breaks[index][1]
        high = min(len(text), after + CLAUSE_CHARS)
        index = bisect.bisect_left(self.clause_breaks, (after, after))
        if index < len(self.clause_breaks) and self.clause_breaks[index][0] < high:
            high = self.clause_breaks[index][0]
        denied = (
            NEGATED.search(text, low, max(low, where)) is not None
            or _ABSENT_AFTER.search(text, after, max(after, high)) is not None
        )
        self.denials[where] = denied
        return denied

    def _clause_break(self, low: int, high: int) -> bool:
        index = bisect.bisect_left(self.clause_breaks, (low, low))
        return index < len(self.clause_breaks) and self.clause_breaks[index][0] < high

    def _overlap(self, start: int, end: int) -> bool:
        index = bisect.bisect_left(self.spans, (end, -1)) - 1
        return any(a < end and start < b for a, b in self.spans[max(0, index - 2) : index + 1])

    def _breaks(self, line_start: int, line_end: int) -> list[int]:
        if line_start not in self.breaks:
            self.breaks[line_start] = [
                m.end() for m in _BREAK.finditer(self.text, line_start, line_end)
            ]
        return self.breaks[line_start]


def _following_block(text: str, citation: Citation, openings: dict[int, Fence]) -> tuple[str, ...]:
    """A fenced block right after the citation's line (its rest only punctuation) shows it."""
    line_end = text.find("\n", citation.mark_offset)
    if line_end == -1 or text[citation.mark_offset : line_end].strip(" \t:.*_)`-—") != "":
        return ()
    position = line_end + 1
    for _ in range(3):
        nxt = text.find("\n", position)
        if nxt == -1 or text[position:nxt].strip():
            break
        position = nxt + 1
    fence = openings.get(position)
    return fence.body if fence is not None else ()


def _context(
    text: str, citation: Citation, breaks: Callable[[int, int], list[int]]
) -> tuple[int, int]:
    """Where the citation's claims are: its sentence, its table row, or its field group."""
    at = citation.start_offset
    line_start = text.rfind("\n", 0, at) + 1
    line_end = _line_end(text, at)
    if citation.context_start < 0 and _FIELD_START.match(text, line_start):
        citation = replace(citation, context_start=line_start)  # `**Location:** path:12`
    if citation.context_start >= 0:
        end = text.find("\n\n", at, at + MAX_CONTEXT_CHARS)
        return citation.context_start, end if end != -1 else min(len(text), at + MAX_CONTEXT_CHARS)
    if text[line_start:line_end].lstrip().startswith("|"):
        return line_start, line_end
    start, here, here_end = line_start, line_start, line_end
    for _ in range(3):  # a sentence wrapped over lines
        found = breaks(here, here_end)
        index = bisect.bisect_right(found, at) - 1
        if index >= 0:
            start = found[index]
            break
        if here == 0 or _BLOCK_LINE.match(text, here):
            break
        previous = text.rfind("\n", 0, here - 1) + 1
        if not text[previous : here - 1].strip():
            break
        here, here_end, start = previous, here - 1, previous
    mark = max(citation.mark_offset, at)
    found = breaks(line_start, line_end)
    index = bisect.bisect_right(found, mark)
    if index < len(found):
        return start, found[index]
    end = line_end
    for _ in range(3):
        if end >= len(text):
            break
        nxt = _line_end(text, end + 1)
        if not text[end + 1 : nxt].strip() or _BLOCK_LINE.match(text, end + 1):
            break
        found = breaks(end + 1, nxt)
        end = found[0] if found else nxt
        if found:
            break
    return start, end


def _line_end(text: str, at: int) -> int:
    end = text.find("\n", at)
    return len(text) if end == -1 else end
