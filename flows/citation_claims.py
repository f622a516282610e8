"""What a citation claims, and whether that claim is at the cited lines.

A citation's claims are its quoted code (a code span right after it, a tool's code-reference
block, a grep line's text) and the code spans and identifiers its sentence names. The quote must
be at the cited lines exactly (after whitespace is collapsed; no slack unless the citation says
"around"/"near"/"about"); a named symbol must be there too. When a quote or symbol is found only
elsewhere in the file the reason says where, so a reader can see the citation is off.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import Enum
from typing import TYPE_CHECKING

from flows.citation_tokens import is_path_like, parse_cite

if TYPE_CHECKING:
    from flows.citation_layout import Citation, Fence

MAX_QUOTE_CHARS = 2_000
MAX_CLAIMS = 12  # claims read from one sentence
NEAR_SLACK = 3  # lines either side when the citation says "around line 40"
MAX_SEARCH_LINES = 20_000  # lines searched for a quote that is not at the cited ones

_SPAN = re.compile(r"(`+)([^`\n]{1,300}?)\1(?!`)")
_WORD = re.compile(r"[A-Za-z_][\w.]*(?:\(\))?")
_KWARG = re.compile(r"\b[A-Za-z_]\w{0,60}=(?:True|False|None|\d{1,12})\b")
FILE_EXTENSIONS = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "py pyi js mjs cjs ts tsx jsx go rs java kt kts rb php c h cc cpp hpp cs md txt json "
        "yaml yml toml ini cfg conf env sh bash zsh html htm css scss sass less sql xml lock csv "
        "log swift mod sum proto graphql gql vue svelte gradle properties pem key crt tf tfvars "
        "j2 jinja tpl rst bat ps1 mk cmake lua pl r scala ex exs erl hs ml dart zig nim m mm "
        "ipynb cfg service desktop plist gemspec podspec"
    ).split()
)
_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\(.*\)\s*;?")
_SNAKE = re.compile(r"[A-Za-z]\w*_\w*[A-Za-z0-9]|__\w+__")
_CAMEL = re.compile(r"[a-z]+[A-Z]\w*")
_NEGATED = re.compile(
    r"\b(?:no|not|without|missing|lacks?|lacking|never|absent|instead|should|consider|"
    r"recommend(?:ed)?|could|would|add|replace|use|switch|n't)\b",
    re.I,
)
NEAR = re.compile(r"\b(?:around|near|nearby|about|approximately|approx\.?|roughly)\b|~\s*$", re.I)
_ELIDED_LINE = re.compile(r"\s*(?:(?://|#|--|/\*|\*)\s*)?(?:\.\.\.|…)\s*(?:\*/)?\s*")


class Verdict(Enum):
    FOUND = "found"
    NOTHING = "nothing checkable"
    REVERSED = "reversed range"
    NO_LINES = "no such lines"
    QUOTE_MISSING = "quote missing"
    QUOTE_ELSEWHERE = "quote elsewhere"
    SYMBOL_MISSING = "symbol missing"


def judge(citation: Citation, lines: Sequence[str]) -> tuple[Verdict, str]:
    """The verdict on one citation against its file's lines, and the reason in words."""
    start, end = citation.start, citation.end
    if citation.anywhere:
        return _judge_anywhere(citation, lines)
    if end < start:
        return Verdict.REVERSED, f"reversed range {start}-{end}"
    if start < 1 or end > len(lines):
        return Verdict.NO_LINES, ""
    slack = NEAR_SLACK if citation.near else 0
    low, high = max(1, start - slack), min(len(lines), end + slack)
    cited = _squash(" ".join(lines[low - 1 : high]))
    if citation.quote:
        return _judge_quote(citation, lines, cited)
    if citation.block:
        verdict = _judge_block(citation, lines, low, high)
        if verdict is not None:
            return verdict
    found = [c for c, _ in citation.claims if _present(c, cited)]
    if found:
        return Verdict.FOUND, ""
    missing = [c for c, own in citation.claims if own]
    if missing and not citation.negated:
        first = missing[0]
        where = _locate(lines, [first], whole_word=True)
        label = _lines_label(citation)
        if where:
            return Verdict.SYMBOL_MISSING, f"`{first}` is at line {where}, not {label}"
        return Verdict.SYMBOL_MISSING, f"`{first}` is not at {label}"
    return Verdict.NOTHING, ""


def _judge_quote(citation: Citation, lines: Sequence[str], cited: str) -> tuple[Verdict, str]:
    pieces = [p for p in (_squash(p) for p in _elisions(citation.quote or "")) if p]
    if not pieces or _in_order(cited, pieces):
        return (Verdict.FOUND, "") if pieces else (Verdict.NOTHING, "")
    where = _locate(lines, pieces[:1])
    if where:
        return (
            Verdict.QUOTE_ELSEWHERE,
            f"quoted code found at line {where}, cited {_lines_label(citation)}",
        )
    return Verdict.QUOTE_MISSING, ""


def _judge_block(
    citation: Citation, lines: Sequence[str], low: int, high: int
) -> tuple[Verdict, str] | None:
    """A code block shown as the cited lines: most of its lines must be there, in order.

    A block that is nowhere in the file is taken as the model's own code (a suggested fix),
    not a claim about the file: then None, and the sentence decides.
    """
    wanted = [
        _squash(line)
        for line in citation.block
        if line.strip() and not _ELIDED_LINE.fullmatch(line)
    ]
    if not wanted:
        return None
    window = [_squash(line) for line in lines[low - 1 : high]]
    at_lines = sum(any(w and w in have for have in window) for w in wanted)
    if at_lines * 2 >= len(wanted) and at_lines:
        return Verdict.FOUND, ""
    where = _locate(lines, wanted[:1])
    if where and (where < low or where > high):
        return (
            Verdict.QUOTE_ELSEWHERE,
            f"quoted code found at line {where}, cited {_lines_label(citation)}",
        )
    return None


def _judge_anywhere(citation: Citation, lines: Sequence[str]) -> tuple[Verdict, str]:
    """A block whose highlights count from its own first line: is the block in the file?"""
    wanted = [_squash(line) for line in citation.block if line.strip()]
    if not wanted:
        return Verdict.NOTHING, ""
    where = _locate(lines, wanted[:1])
    if not where:
        return Verdict.QUOTE_MISSING, "quoted code not in the file"
    window = [_squash(line) for line in lines[where - 1 : where - 1 + len(citation.block) + 2]]
    at_lines = sum(any(w in have for have in window) for w in wanted)
    if at_lines * 2 >= len(wanted):
        return Verdict.FOUND, ""
    return Verdict.QUOTE_MISSING, "quoted code not in the file"


def sentence_claims(
    text: str, start: int, end: int, skip: Callable[[int, int], bool]
) -> list[tuple[str, int]]:
    """The code spans and identifiers in text[start:end], with their offsets, skipping what
    `skip` says is a citation's own span and anything that is a path or a citation."""
    claims: list[tuple[str, int]] = []
    blanked = list(text[start:end])
    for match in _SPAN.finditer(text, start, end):
        body = match.group(2).strip()
        where = match.start()
        for index in range(match.start() - start, match.end() - start):
            blanked[index] = " "
        if skip(where, match.end()) or not _code_like(body):
            continue
        claims.append((body, where))
    plain = "".join(blanked)
    for match in _WORD.finditer(plain):
        word = match.group().rstrip(".")
        where = start + match.start()
        if skip(where, where + len(word)) or _file_name(word.removesuffix("()")):
            continue
        bare = word.removesuffix("()")
        if word.endswith("()") or _SNAKE.fullmatch(bare) or _CAMEL.fullmatch(bare):
            claims.append((word, where))
    for match in _KWARG.finditer(plain):
        where = start + match.start()
        if not skip(where, where + len(match.group())):
            claims.append((match.group(), where))
    claims.sort(key=lambda item: item[1])
    return claims


def negated(text: str) -> bool:
    """A sentence that speaks of code that is absent or proposed: its names need not be there."""
    return _NEGATED.search(text) is not None


def _code_like(body: str) -> bool:
    if len(body) < 2 or body.isdigit() or "://" in body:
        return False
    return not (parse_cite(body) or _file_name(body))


def _file_name(word: str) -> bool:
    """A path or a file name with a file's extension (`hashlib.md5` is code, `app.py` a file)."""
    if not is_path_like(word):
        return False
    return "/" in word or "." not in word or word.rsplit(".", 1)[1].lower() in FILE_EXTENSIONS


def _variants(claim: str) -> list[str]:
    """The claim as written, and the name it calls (`retry(x)` -> `retry`)."""
    text = _squash(claim)
    found = [text]
    call = _CALL.fullmatch(text)
    if call:
        found.append(call.group(1))
    if text.endswith("()"):
        found.append(text[:-2])
    for item in list(found):
        if "." in item and re.fullmatch(r"[\w.]+", item):
            found.append(item.rsplit(".", 1)[1])
    return [v for v in found if v]


def _present(claim: str, cited: str) -> bool:
    for variant in _variants(claim):
        pattern = (r"(?<!\w)" if variant[0].isalnum() or variant[0] == "_" else "") + re.escape(
            variant
        )
        if variant[-1].isalnum() or variant[-1] == "_":
            pattern += r"(?!\w)"
        if re.search(pattern, cited):
            return True
    return False


def _locate(lines: Sequence[str], pieces: list[str], *, whole_word: bool = False) -> int:
    """The first line (1-based) where the first piece (or its name) appears, else 0."""
    if not pieces:
        return 0
    needles = _variants(pieces[0]) if whole_word else [pieces[0]]
    for number, line in enumerate(lines[:MAX_SEARCH_LINES], start=1):
        squashed = _squash(line)
        hit = any(needle in squashed for needle in needles if needle)
        if hit and (not whole_word or _present(pieces[0], squashed)):
            return number
    # a quote written across lines: find where its first words are
    head = pieces[0][:60]
    joined = ""
    for number, line in enumerate(lines[:MAX_SEARCH_LINES], start=1):
        joined = (joined + " " + _squash(line))[-400:]
        if head and head in joined and not whole_word:
            return number
    return 0


def _in_order(haystack: str, pieces: list[str]) -> bool:
    position = 0
    for piece in pieces:
        found = haystack.find(piece, position)
        if found == -1:
            return False
        position = found + len(piece)
    return True


def _lines_label(citation: Citation) -> str:
    if citation.start == citation.end:
        return f"line {citation.start}"
    return f"lines {citation.start}-{citation.end}"


def _elisions(quote: str) -> list[str]:
    """The parts of a quote around `...` / `…` elisions, ends trimmed of dots and spaces."""
    return [part.strip(". ") for part in quote[:MAX_QUOTE_CHARS].replace("…", "...").split("...")]


def _squash(text: str) -> str:
    return " ".join(text.split())


_SPACED = re.compile(
    r"(?P<path>[^:#`\n]{1,300}\.[A-Za-z0-9]{1,10})"
    r"(?::L?(?P<a>\d{1,9})(?:\s?[-\u2013\u2014]\s?L?(?P<b>\d{1,9}))?|#L(?P<c>\d{1,9})(?:-L?(?P<d>\d{1,9}))?)"
)
_NOT_PATH_WORDS = frozenset(
    ("see", "in", "at", "on", "from", "of", "file", "open", "edit", "run", "check", "line")
)
_FIELD_START = re.compile(
    r"[ \t>]*(?:(?:[-*+]|\d{1,3}[.)])[ \t]+)?[*_]{0,2}(?:file|path|location|where|source|lines?)"
    r"[*_]{0,2}[ \t]*:",
    re.I,
)
_BREAK = re.compile(r"[.!?](?=\s)")
_BLOCK_LINE = re.compile(r"\s*(?:[-*+#>|]|\d{1,3}[.)]|```|~~~)")
MAX_CONTEXT_CHARS = 2_000
CLAIM_WINDOW = 400  # characters either side of a citation where its sentence's claims count
BUCKET = 1_024  # claims are read once per stretch of this many characters
MAX_PEERS = 50


def spaced_cite(content: str) -> tuple[str, int, int] | None:
    """`monthly report.py:12` in a code span: a path with spaces and its lines."""
    match = _SPACED.fullmatch(content)
    if match is None:
        return None
    path = match["path"]
    words = path.split(" ")
    if len(words) > 5 or words[0].lower() in _NOT_PATH_WORDS or path != path.strip():
        return None
    if any(w.endswith((":", ",")) for w in words) or not is_path_like(path.replace(" ", "_")):
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
            (claim, _nearest(where, peers, citations) == index)
            for claim, where in reading.claims(start, end)
        )
        before = text[max(start, citation.start_offset - 24) : citation.start_offset]
        result.append(
            replace(
                citation,
                claims=claims,
                near=NEAR.search(before) is not None,
                negated=reading.negated(start, end),
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
        self.bucket_claims: dict[int, list[tuple[str, int]]] = {}
        self.negations: dict[int, list[int]] = {}

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

    def negated(self, start: int, end: int) -> bool:
        """Does a negating word (not, missing, should, ...) sit in text[start:end]?"""
        for bucket in range(start // BUCKET, end // BUCKET + 1):
            if bucket not in self.negations:
                low, high = bucket * BUCKET, min(len(self.text), (bucket + 1) * BUCKET)
                self.negations[bucket] = [
                    m.start() for m in _NEGATED.finditer(self.text, low, high)
                ]
            if any(start <= where < end for where in self.negations[bucket]):
                return True
        return False

    def _overlap(self, start: int, end: int) -> bool:
        index = bisect.bisect_left(self.spans, (end, -1)) - 1
        return any(a < end and start < b for a, b in self.spans[max(0, index - 2) : index + 1])

    def _breaks(self, line_start: int, line_end: int) -> list[int]:
        if line_start not in self.breaks:
            self.breaks[line_start] = [
                m.end() for m in _BREAK.finditer(self.text, line_start, line_end)
            ]
        return self.breaks[line_start]


def _nearest(where: int, peers: list[int], citations: list[Citation]) -> int:
    return min(peers, key=lambda i: abs(citations[i].start_offset - where))


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
