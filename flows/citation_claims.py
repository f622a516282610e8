"""What a citation claims, and whether that claim is at the cited lines.

A citation's claims are its quoted code (a code span right after it, a tool's code-reference
block, a grep line's text) and the code spans and identifiers its sentence names. The quote must
be at the cited lines exactly (after whitespace is collapsed; no slack unless the citation says
"around"/"near"/"about"); a named symbol must be there too. When a quote or symbol is found only
elsewhere in the file the reason says where, so a reader can see the citation is off.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from flows.citation_tokens import is_path_like, parse_cite

if TYPE_CHECKING:
    from flows.citation_layout import Citation

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
_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\([^()]*\)\s*;?")  # one call, not an expression
_DEFINITION = re.compile(
    r"\s*(?:(?:export|public|private|protected|static|async|pub|override)\s+)*"
    r"(?:def|class|function|func|fn|fun|sub|interface|struct|impl)\s+[A-Za-z_]"
)
DEFINITION_REACH = 30  # lines looked through for the definition the cited lines are in
_PLAIN_NAME = re.compile(r"[A-Za-z_]\w*(?:\(\))?")
_SNAKE = re.compile(r"[A-Za-z]\w*_\w*[A-Za-z0-9]|__\w+__")
_CAMEL = re.compile(r"[a-z]+[A-Z]\w*")
NEGATED = re.compile(
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
    # Every name the sentence gives this citation is its claim: one found does not vouch for
    # another that is absent. Names nearer another citation of the sentence are that one's.
    own = [c for c, mine in citation.claims if mine]
    missing = [c for c in own if not _present(c, cited)]
    if missing:
        anchored = len(missing) < len(own)
        missing = _outside_definition(missing, lines, low, high, anchored=anchored)
    if own and not missing:
        return Verdict.FOUND, ""
    if missing:
        first = missing[0]
        where = _locate(lines, [first], whole_word=True)
        label = _lines_label(citation)
        if where:
            return Verdict.SYMBOL_MISSING, f"`{first}` is at line {where}, not {label}"
        if len(missing) < len(own):
            return Verdict.SYMBOL_MISSING, f"named code not at those lines: {first}"
        return Verdict.SYMBOL_MISSING, f"`{first}` is not at {label}"
    if any(_present(c, cited) for c, _ in citation.claims):
        return Verdict.FOUND, ""  # names said to be absent or proposed, or another citation's
    return Verdict.NOTHING, ""


def _outside_definition(
    missing: list[str], lines: Sequence[str], low: int, high: int, *, anchored: bool
) -> list[str]:
    """The missing names that the cited lines' own definition does not account for.

    A sentence may name the function the cited lines are in (`run_report` ... `eval` at its
    line 12) or one of its parameters: a plain name on the definition's own line is context.
    A plain name in the definition's lines above the cited ones is context too, but only when
    something else the sentence names is at the cited lines (`anchored`): "passes `expr` to
    `eval` at line 12" is true of line 12, while "`split_reference` runs at line 23" names
    nothing there. A cited block header line (`def connect():`) cites its body too, on the
    same condition: "`connect()` at line 8 returns `sqlite3.connect(DB_PATH)`" holds, while
    "sums at line 11 with `total += ...`" (line 11 being `def total_of(rows):`) names nothing
    at line 11 and is flagged.
    """
    header = 0
    for number in range(low, max(0, low - DEFINITION_REACH) - 1, -1):
        if _DEFINITION.match(lines[number - 1]):
            header = number
            break
    if not header:
        return missing
    above = lines[header - 1 : max(header, low - 1)] if anchored else [lines[header - 1]]
    context = _squash(" ".join(above))
    body = _block_body(lines, low) if anchored and low == high else ""
    return [
        claim
        for claim in missing
        if not (context and _PLAIN_NAME.fullmatch(claim) and _present(claim, context))
        and not (body and _present(claim, body))
    ]


def _block_body(lines: Sequence[str], header: int) -> str:
    """The body under a cited block header line (`def f():`, `if ok {`), to where its
    indentation ends; "" when the line opens no block."""
    if not lines[header - 1].rstrip().endswith((":", "{")):
        return ""
    indent = _indent(lines[header - 1])
    end = header
    while end < min(len(lines), header + DEFINITION_REACH):
        if lines[end].strip() and _indent(lines[end]) <= indent:
            break
        end += 1
    return _squash(" ".join(lines[header:end]))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


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
    """The claim as written, and the name a single call calls (`retry(x)` -> `retry`).

    A dotted name stays whole (`pickle.loads` is not `json.loads`), and an expression is
    not reduced to one of its tokens (`cents = -cents` is not `cents`).
    """
    text = _squash(claim)
    found = [text]
    call = _CALL.fullmatch(text)
    if call:
        found.append(call.group(1))
    if text.endswith("()"):
        found.append(text[:-2])
    return [v for v in found if v]


def _present(claim: str, cited: str) -> bool:
    """Is the claim at the cited text, case-sensitively and at word boundaries?"""
    for variant in _variants(claim):
        if re.search(_bounded(variant), cited):
            return True
    # the same code spaced differently (`cents=-cents` for `cents = -cents`)
    text = _squash(claim)
    if " " in text and not re.fullmatch(r"[\w. ]+", text):
        return re.search(_bounded(text.replace(" ", "")), cited.replace(" ", "")) is not None
    return False


def _bounded(variant: str) -> str:
    pattern = (r"(?<!\w)" if variant[0].isalnum() or variant[0] == "_" else "") + re.escape(variant)
    if variant[-1].isalnum() or variant[-1] == "_":
        pattern += r"(?!\w)"
    return pattern


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
