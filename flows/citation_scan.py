"""Finding citation-like strings in a model's Markdown, in the forms models actually write.

A citation-like string is a path-like token (see `flows.citation_tokens`) with lines attached
(`app.py:12`, `app.py:12-20` with any dash, `app.py#L12-L20`, `app.py:L12`, `app.py:12:5`,
`app.py:12,15`), or next to a line phrase (`app.py` line 12, `app.py` (lines 12-20), lines
12-20 of `app.py`, L12 in app.py, `app.py` L12, `app.py`:12, File "app.py", line 12), or
"line 12" later in a sentence that names one path, or "Line 12:" / "L12:" opening an item
under a heading that names a file, or a table row with a File and a Line column. Times
(10:30), ratios (3:1), versions (python:3.12), hosts (localhost:8000) and URLs are not.

The text is hostile, so the scan is linear: it is cut into lines and tokens by simple
character-class runs (nothing can backtrack across the text), and each token and its few
neighbours are read by small anchored patterns.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from dataclasses import replace

from flows import citation_forms as forms
from flows.citation_context import attach_claims, spaced_cite
from flows.citation_layout import (
    Citation,
    Fence,
    TextLine,
    closes,
    enclosing,
    prepare,
    table_row,
    table_state,
)
from flows.citation_tokens import (
    NUMBER,
    Token,
    is_path_like,
    line_range,
    parse_cite,
    read_token,
)

MAX_SCAN_CHARS = 200_000  # a longer text is checked up to here and says so
LOOKBACK_TOKENS = 15  # how far "line 12" looks back for the path its sentence names

# Tokens: runs of characters that are not whitespace, Markdown punctuation or control bytes.
_TOKEN = re.compile(r"[^\s`*()\[\]{}<>|,;\"'\x00-\x1f\x7f]+")
# An en or em dash inside a token separates words unless a line number follows it.
_DASH_PIECE = re.compile(r"(?:[^\u2013\u2014]|[\u2013\u2014](?=L?\d))+")
_HEADING = re.compile(r"[ \t]{0,3}#{1,6}[ \t]")
_ITEM_START = re.compile(r"[ \t>]*(?:(?:[-*+]|\d{1,3}[.)])[ \t]+)?[*_`]*")
_FENCE = re.compile(r"[ \t]*(?P<fence>`{3,}|~{3,})")
_SENTENCE_BREAK = re.compile(r"[.!?](?=\s|$)")
_NAME = re.compile(r"[A-Za-z_][\w.]{0,200}(?:\(\))?")
_QUOTE_GAP = re.compile(r"[\s:,=>→(*_\u2014\u2013-]{0,16}")
_SMALL_GAP = re.compile(r"[\s`*_,:()\"']{0,8}")
LIST_WORDS = frozenset({"and", "&"})
BEFORE_LINE = frozenset({"at", "on", "near", "around", "in", "from"})
BEFORE_PATH = frozenset({"of", "in", "from"})
FILLER = frozenset({"the", "file", "module", "script"})


def scan(text: str) -> list[Citation]:
    """Every citation-like string in the text (up to MAX_SCAN_CHARS), in text order."""
    text = text[:MAX_SCAN_CHARS]
    scanner = _Scanner(text)
    found = scanner.run()
    blocks = [(f.content_start, "\n".join(f.body), f.info) for f in scanner.fences]
    found += [scanner.found_at(f) for f in forms.json_citations(text, blocks) if scanner.free(f)]
    taken = [(c.start_offset, max(c.end_offset, c.start_offset + 1)) for c in found]
    taken += scanner.covered
    found += [scanner.found_at(f) for f in forms.loose_citations(text, taken)]
    found = attach_claims(text, found, scanner.fences)
    return sorted(found, key=lambda c: (c.start_offset, c.end_offset))


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.found: list[Citation] = []
        self.block: list[Citation] = []  # citations of the fenced block being read
        # The file a heading (### `app.py`) or a label line (**app.py**:) names: a bare
        # "Line 12:" under it cites that file.
        self.context: str | None = None
        # (opening line start, content start, content end, close end, info) of each fence
        self.fences: list[Fence] = []
        self.fence_info = ("", 0)
        self.fence_body: list[str] = []
        self.fence_start = 0
        self.covered: list[tuple[int, int]] = []
        self.starts: list[int] = []  # link texts whose target is the citation
        self.grep_heading: str | None = None  # rg's heading: a file name alone on a line
        self.field_file: tuple[str, int, int, int] | None = None  # path, start, end, line start
        # a traceback's `File` line and its indent: its next, deeper line is the cited code
        self.traced: tuple[Citation, int] | None = None

    def run(self) -> list[Citation]:
        fence = ""
        table: tuple[int | None, int | None] | None = None  # (file column, line column)
        previous: TextLine | None = None
        for line in self._lines():
            raw = self.text[line.start : line.end]
            opened = _FENCE.match(raw)
            if fence:
                if opened and closes(opened["fence"], fence) and raw.strip() == opened["fence"]:
                    self._close_block(line.start, line.end, "")
                    fence = ""
                    continue
                self._block_line(line)
                self.fence_body.append(raw)
                continue
            if opened and (opened["fence"][0] == "~" or "`" not in raw[opened.end() :]):
                fence = opened["fence"]
                self.fence_info = (raw[opened.end() :], line.start + opened.end())
                self.fence_body, self.fence_start, self.grep_heading = [], line.start, None
                continue
            if not raw.strip():
                self.field_file = None
            prepare(self.text, line)
            tokens = list(self._tokens(line))
            self._update_context(raw, tokens)
            table = table_state(self.text, table, previous, raw)
            self._prose(line, tokens, table)
            previous = line
        if fence:
            self._close_block(len(self.text), len(self.text), "\n" + fence)
        return self.found

    def free(self, found: forms.Found) -> bool:
        """No citation already starts inside this form's span."""
        if len(self.starts) != len(self.found):
            self.starts = sorted(c.start_offset for c in self.found)
        index = bisect.bisect_left(self.starts, found.start)
        return index >= len(self.starts) or self.starts[index] >= found.end

    def found_at(self, found: forms.Found) -> Citation:
        """A citation for a whole-text form; one inside a fence is marked after the fence."""
        cited = replace(
            self._citation(found.path, found.first, found.last, found.form, found.start),
            end_offset=found.end,
            quote=found.quote,
        )
        index = bisect.bisect_right([f.content_start for f in self.fences], found.start) - 1
        if index >= 0:
            fence = self.fences[index]
            if fence.content_start <= found.start < fence.close_end:
                return replace(cited, in_code_block=True, mark_at=fence.close_end,
                               close_fence=fence.close_fence)  # fmt: skip
        return cited

    # --- structure ---------------------------------------------------------------------------

    def _lines(self) -> Iterator[TextLine]:
        start = 0
        size = len(self.text)
        while start <= size:
            end = self.text.find("\n", start)
            if end == -1:
                end = size
            yield TextLine(start=start, end=end)
            start = end + 1

    def _tokens(self, line: TextLine) -> Iterator[Token]:
        for match in _TOKEN.finditer(self.text, line.start, line.end):
            word = match.group()
            if "\u2013" in word or "\u2014" in word:
                for piece in _DASH_PIECE.finditer(word):
                    yield read_token(piece.group(), match.start() + piece.start())
            else:
                yield read_token(word, match.start())

    def _update_context(self, raw: str, tokens: list[Token]) -> None:
        heading = _HEADING.match(raw) is not None
        words = [t for t in tokens if t.text.strip("#")]
        alone = len(words) == 1 and words[0].kind == "path"
        label = alone and not raw.lstrip().startswith(("-", "+", "* ", "|"))
        if heading or label:
            self.context = words[0].text if alone else None

    # --- the forms ---------------------------------------------------------------------------

    def _prose(
        self, line: TextLine, tokens: list[Token], table: tuple[int | None, int | None] | None
    ) -> None:
        self._tool_forms(line, tokens)
        for index, token in enumerate(tokens):
            if token.used:
                continue
            if token.kind == "cite" and token.cite:
                path, first, last = token.cite
                form = "anchor" if "#L" in token.text else "colon"
                self._emit(line, path, first, last, form, token.start, token.end)
                token.used = True
                self._more_lines(line, tokens, index, path)
        if table is not None and (row := table_row(self.text, line, tokens, table)):
            self._emit(line, row[0], row[1], row[2], "table", row[3], row[4])
        breaks = [m.start() for m in _SENTENCE_BREAK.finditer(self.text, line.start, line.end)]
        for index, token in enumerate(tokens):
            if token.used:
                continue
            if token.kind == "path":
                self._after_path(line, tokens, index)
            elif token.kind == "line":
                self._line_phrase(line, tokens, index, breaks)
            elif token.kind == "lnum":
                self._l_in_path(line, tokens, index)

    def _tool_forms(self, line: TextLine, tokens: list[Token]) -> None:
        """【F:path†L12】, `File:` / `Line:` fields, `path with spaces.py:12` in a code span,
        and a link whose target is a citation (its text is not checked, its target is)."""
        taken: list[tuple[int, int]] = []
        for found in forms.f_citations(self.text, line.start, line.end):
            self._emit(line, found.path, found.first, found.last, found.form, found.start,
                       found.end)  # fmt: skip
            taken.append((found.start, found.end))
        for _, content_start, content_end, _ in line.spans:
            content = self.text[content_start:content_end]
            if " " in content.strip() and (cite := spaced_cite(content.strip())):
                at = self.text.index(content.strip(), content_start)
                self._emit(line, cite[0], cite[1], cite[2], "spaced", at, at + len(content.strip()))
                taken.append((content_start, content_end))
        for start, end in line.links:
            label_end = self.text.find("](", start, end)
            target = self.text[label_end + 2 : end - 1].split(" ", 1)[0].strip("<>")
            if label_end != -1 and parse_cite(target.removeprefix("./")):
                taken.append((start, label_end))
                self.covered.append((start, label_end))
        named = forms.field_file(self.text, line.start, line.end)
        if named is not None:
            self.field_file = (*named, line.start)
        lines = forms.field_lines(self.text, line.start, line.end)
        if lines is not None and self.field_file is not None:
            path, _, _, group = self.field_file
            first, last, start, end = lines
            self._emit(line, path, first, last, "fields", start, end)
            self.found[-1] = replace(self.found[-1], context_start=group)
            taken.append((start, end))
            self.field_file = None
        for token in tokens:
            if any(a <= token.start < b for a, b in taken):
                token.used = True

    def _more_lines(self, line: TextLine, tokens: list[Token], index: int, path: str) -> None:
        """app.py:15,21: the numbers after a comma cite more lines of the same file."""
        while index + 1 < len(tokens) and tokens[index + 1].kind == "num":
            if self._between(tokens, index) not in (",", ", "):
                return
            index += 1
            first, last = line_range(tokens[index])
            tokens[index].used = True
            self._emit(
                line, path, first, last, "colon-list", tokens[index].start, tokens[index].end
            )

    def _after_path(self, line: TextLine, tokens: list[Token], index: int) -> None:
        """`path`:12, `path` line 12, `path` (lines 12-20), File "path", line 12, path L12."""
        path = tokens[index]
        nxt = self._next(tokens, index)
        if nxt is None:
            return
        if nxt.kind == "colon" and nxt.cite and self.text[path.end : nxt.start].strip("`*_") == "":
            _, first, last = nxt.cite
            nxt.used = path.used = True
            self._emit(line, path.text, first, last, "path-colon", path.start, nxt.end)
            return
        if nxt.kind == "lnum" and not nxt.used:
            first, last = line_range(nxt)
            nxt.used = path.used = True
            self._emit(line, path.text, first, last, "path-L", path.start, nxt.end)
            return
        probe = index + 1
        if nxt.text.lower() in BEFORE_LINE:
            probe += 1
        word = tokens[probe] if probe < len(tokens) else None
        if word is None or word.kind != "line" or not self._adjacent(tokens, index, probe):
            return
        ranges, after = self._numbers(tokens, probe + 1)
        if not ranges:
            return
        for token in tokens[index:after]:
            token.used = True
        for first, last in ranges:
            self._emit(line, path.text, first, last, "path-line", path.start, tokens[after - 1].end)

    def _line_phrase(
        self, line: TextLine, tokens: list[Token], index: int, breaks: list[int]
    ) -> None:
        """lines 12-20 of `path`, line 12 in path; else "line 12" after a path in the sentence."""
        ranges, after = self._numbers(tokens, index + 1)
        if not ranges:
            return
        probe = after
        if probe < len(tokens) and tokens[probe].text.lower() in BEFORE_PATH:
            probe += 1
            while probe < len(tokens) and tokens[probe].text.lower() in FILLER:
                probe += 1
            if probe < len(tokens) and tokens[probe].kind == "path":
                target = tokens[probe]
                if self._adjacent(tokens, after - 1, probe):
                    for token in tokens[index : probe + 1]:
                        token.used = True
                    for first, last in ranges:
                        self._emit(
                            line, target.text, first, last, "line-of", tokens[index].start,
                            target.end,
                        )  # fmt: skip
                    return
        # "In `app/views.py`, the call at line 6 ..."
        for back in range(index - 1, max(-1, index - 1 - LOOKBACK_TOKENS), -1):
            candidate = tokens[back]
            if candidate.kind == "cite":
                return  # a nearer citation names its own lines; do not guess
            if candidate.kind != "path":
                continue
            lo = bisect.bisect_left(breaks, candidate.end)
            if lo < len(breaks) and breaks[lo] < tokens[index].start:
                return  # the path is in an earlier sentence
            self._cite_phrase(line, tokens, index, after, candidate.text, ranges)
            return
        if self.context is not None:
            self._cite_phrase(line, tokens, index, after, self.context, ranges)

    def _cite_phrase(
        self,
        line: TextLine,
        tokens: list[Token],
        index: int,
        after: int,
        path: str,
        ranges: list[tuple[int, int]],
    ) -> None:
        """Cite `path` at each range of the "line 12" phrase tokens[index:after]."""
        for token in tokens[index:after]:
            token.used = True
        start, end = tokens[index].start, tokens[after - 1].end
        for first, last in ranges:
            self._emit(line, path, first, last, "line-in-sentence", start, end)

    def _l_in_path(self, line: TextLine, tokens: list[Token], index: int) -> None:
        """L12 in path, L12-L20 of `path`; a list item opening with L12 under a file heading."""
        probe = index + 1
        if probe >= len(tokens) or tokens[probe].text.lower() not in BEFORE_PATH:
            at_start = _ITEM_START.fullmatch(self.text, line.start, tokens[index].start)
            if at_start and self.context is not None:
                first, last = line_range(tokens[index])
                tokens[index].used = True
                self._emit(line, self.context, first, last, "L-under-heading", tokens[0].start,
                           tokens[0].end)  # fmt: skip
            return
        probe += 1
        while probe < len(tokens) and tokens[probe].text.lower() in FILLER:
            probe += 1
        if probe >= len(tokens) or tokens[probe].kind != "path":
            return
        if not self._adjacent(tokens, index, probe):
            return
        target = tokens[probe]
        first, last = line_range(tokens[index])
        for token in tokens[index : probe + 1]:
            token.used = True
        self._emit(line, target.text, first, last, "L-in", tokens[index].start, target.end)

    def _numbers(self, tokens: list[Token], index: int) -> tuple[list[tuple[int, int]], int]:
        """`12`, `12-20`, `12 to 20`, `12, 15 and 20` from tokens[index:]: (ranges, next index)."""
        ranges: list[tuple[int, int]] = []
        while (
            index < len(tokens)
            and tokens[index].kind == "num"
            and not tokens[index].used
            and self._adjacent(tokens, index - 1, index)
        ):
            first, last = line_range(tokens[index])
            index += 1
            if (
                index + 1 < len(tokens)
                and tokens[index].kind == "range"
                and tokens[index + 1].kind == "num"
                and NUMBER.fullmatch(tokens[index + 1].text)
                and self._adjacent(tokens, index - 1, index + 1)
            ):
                last = line_range(tokens[index + 1])[1]
                index += 2
            ranges.append((first, last or first))
            if index < len(tokens) and tokens[index].text.lower() in LIST_WORDS:
                index += 1  # "12 and 20": the next number joins the list
                continue
            if (
                index >= len(tokens)
                or "," not in self.text[tokens[index - 1].end : tokens[index].start]
            ):
                break
        if ranges and tokens[index - 1].kind != "num":
            index -= 1  # a trailing "and" that no number followed belongs to the sentence
        return ranges, index

    def _between(self, tokens: list[Token], index: int) -> str:
        return self.text[tokens[index].end : tokens[index + 1].start]

    def _next(self, tokens: list[Token], index: int) -> Token | None:
        if index + 1 < len(tokens) and self._adjacent(tokens, index, index + 1):
            return tokens[index + 1]
        return None

    def _adjacent(self, tokens: list[Token], left: int, right: int) -> bool:
        """Only spaces and Markdown punctuation between tokens[left] and tokens[right]."""
        return all(
            _SMALL_GAP.fullmatch(self.text, tokens[index].end, tokens[index + 1].start)
            for index in range(left, right)
        )

    # --- code blocks and marks ---------------------------------------------------------------

    def _block_line(self, line: TextLine) -> None:
        """Inside a fenced block: grep output, self-contained citations and tracebacks."""
        tokens = list(self._tokens(line))
        traced, self.traced = self.traced, None
        if traced is not None and self.block and self.block[-1] is traced[0]:
            raw = self.text[line.start : line.end]
            code = raw.strip()
            deeper = len(raw) - len(raw.lstrip()) > traced[1]
            if deeper and code and not code.startswith(("File ", "^", "~")):
                # a traceback prints the cited line right under its `File "...", line N`
                self.block[-1] = replace(traced[0], quote=code, form="traceback")
                return
        grep = forms.grep_line(self.text, line.start, line.end, self.grep_heading)
        if grep is not None:
            cited = self._citation(grep.path, grep.first, grep.last, grep.form, grep.start)
            self.block.append(replace(cited, quote=grep.quote, end_offset=grep.end))
            return
        trace = forms.traceback_line(self.text, line.start, line.end)
        if trace is not None:
            cited = self._citation(trace.path, trace.first, trace.last, trace.form, trace.start)
            self.block.append(replace(cited, end_offset=trace.end))
            self.traced = (self.block[-1], trace.start - line.start - len('File "'))
            return
        words = [t for t in tokens if t.text]
        if len(words) == 1 and words[0].kind == "path":
            self.grep_heading = words[0].text
        for index, token in enumerate(tokens):
            if token.kind == "cite" and token.cite:
                path, first, last = token.cite
                cited = self._citation(path, first, last, "code-block", token.start)
                self.block.append(replace(cited, end_offset=token.end))
            elif token.kind == "path" and index + 2 < len(tokens):
                word, number = tokens[index + 1], tokens[index + 2]
                if (
                    word.kind == "line"
                    and number.kind == "num"
                    and self._adjacent(tokens, index, index + 2)
                ):
                    first, last = line_range(number)
                    cited = self._citation(token.text, first, last, "code-block", token.start)
                    self.block.append(replace(cited, end_offset=number.end))

    def _close_block(self, close_start: int, offset: int, close_fence: str) -> None:
        info, info_offset = self.fence_info
        content_start = self.text.find("\n", self.fence_start, close_start) + 1 or close_start
        for found in forms.fence_citations(info, info_offset, self.fence_body):
            cited = self._citation(found.path, found.first, found.last, found.form, found.start)
            self.block.insert(0, replace(cited, end_offset=found.end, block=found.block,
                                         anywhere=found.anywhere))  # fmt: skip
        self.fences.append(Fence(opening=self.fence_start, content_start=content_start,
                                 close_end=offset, close_fence=close_fence, info=info,
                                 body=tuple(self.fence_body)))  # fmt: skip
        for item in self.block:
            end = item.end_offset if item.end_offset > item.start_offset else item.start_offset
            self.found.append(
                replace(
                    item,
                    end_offset=end,
                    mark_at=offset,
                    in_code_block=True,
                    close_fence=close_fence,
                )
            )
        self.block = []

    def _citation(self, path: str, first: int, last: int, form: str, start: int) -> Citation:
        return Citation(
            path=path.removeprefix("file://"),
            start=first,
            end=last or first,
            quote=None,
            form=form,
            start_offset=start,
            end_offset=start,
        )

    def _emit(
        self, line: TextLine, path: str, first: int, last: int, form: str, start: int, end: int
    ) -> None:
        phrase = self.text[start:end]
        if phrase.count("(") > phrase.count(")") and self.text[end : end + 1] == ")":
            end += 1  # `app.py` (line 12): the mark goes after the parenthesis
        mark = self._mark_position(line, start, end)
        if self.found and self.found[-1].end_offset == mark:
            same = self.found[-1]
            if (same.path, same.start, same.end) == (path.removeprefix("file://"), first, last):
                return  # [app.py:12](app.py#L12): one citation, written twice
        cited = self._citation(path, first, last, form, start)
        self.found.append(replace(cited, quote=self._quote(line, mark), end_offset=mark))

    def _mark_position(self, line: TextLine, start: int, end: int) -> int:
        """After the citation, its code span, its link and closing emphasis."""
        position = end
        for offset in (start, end):
            span = enclosing(line.spans, offset)
            if span is not None and span[1] <= offset <= span[2]:
                position = max(position, span[3])
        link = enclosing(line.links, start)
        if link is not None and start < link[1]:
            position = max(position, link[1])
        skipped = 0
        while position < line.end and self.text[position] in "*_" and skipped < 3:
            position += 1
            skipped += 1
        return position

    def _quote(self, line: TextLine, mark: int) -> str | None:
        """A code span right after the citation is the text it claims is at those lines."""
        index = bisect.bisect_left(line.spans, (mark, 0, 0, 0))
        if index >= len(line.spans):
            return None
        open_start, content_start, content_end, _ = line.spans[index]
        if not _QUOTE_GAP.fullmatch(self.text, mark, open_start):
            return None
        content = self.text[content_start:content_end].strip()
        if len(content) < 3 or parse_cite(content) or is_path_like(content):
            return None
        if _NAME.fullmatch(content):
            return None  # a name is the sentence's subject, not the line: a claim, not a quote
        return content
