"""The citation forms agent tools write, read one line or one block at a time.

Code-reference fences (```` ```40:46:src/app/handlers.py ````), fences with a `title="path"`
attribute and line highlights (`{3-5}`, `hl_lines="3 5"`, `linenums="40"`), `【F:path†L12-L20】`,
field layouts (`**File:** path` then `**Line:** 12`), JSON objects with file and line fields,
and `grep -n` / `rg -n` output lines (`path:12:text`). Each pattern is anchored or bounded to
one line (or one brace-free object), so none can backtrack across the text.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from flows.citation_tokens import (
    HOST_SUFFIXES,
    is_path_like,
    is_spaced_path,
    line_number,
    parse_cite,
)

MAX_OBJECT_CHARS = 4_000  # a JSON object read for file and line fields

_CODE_REF = re.compile(r"\s*(?P<a>\d{1,9}):(?P<b>\d{1,9}):(?P<path>[^\s`]{1,1000})\s*")
_TITLE = re.compile(
    r"""\b(?:title|filename|file|path)=(?:"([^"\n]{1,500})"|'([^'\n]{1,500})'|(\S{1,500}))"""
)
_BRACES = re.compile(r"\{([\d,\s\-]{1,200})\}")
_HL = re.compile(r"""\b(?:hl_lines|highlight|lines|mark)=["']?([\d,\s\-]{1,200})["']?""")
_BASE = re.compile(
    r"""\b(?:linenums|startline|start|showLineNumbers|linenostart|firstline)=["']?(\d{1,9})"""
)
_RANGE = re.compile(r"(\d{1,9})(?:\s*-\s*(\d{1,9}))?")
_F_CITE = re.compile(
    r"【F:(?P<path>[^†】\n]{1,1000})†L(?P<a>\d{1,9})(?:\s*[-\u2013]\s*L?(?P<b>\d{1,9}))?】"
)
_FIELD_FILE = re.compile(
    r"[ \t>*+\-]*(?:\d{1,3}[.)][ \t]*)?[*_]{0,2}(?:file|path|filename|file ?path|location|source)"
    r"[*_]{0,2}[ \t]*:[ \t]*[*_]{0,2}[ \t]*(?P<value>[^\s|,;]{1,1000})",
    re.I,
)
_FIELD_LINE = re.compile(
    r"(?:^|[\s|,;(])[*_]{0,2}(?:lines?|line numbers?|line no\.?|line range|ln)[*_]{0,2}[ \t]*:"
    r"[ \t]*[*_`]{0,2}[ \t]*L?(?P<a>\d{1,9})(?:[ \t]*(?:[-\u2013\u2014]|to|through)[ \t]*L?"
    r"(?P<b>\d{1,9}))?",
    re.I | re.M,
)
# grep's path runs from the line's start to the first `:N:`, spaces and all
_GREP = re.compile(r"[ \t]*(?P<path>[^\t\n:]{1,1000}):(?P<n>\d{1,9}):(?:\d{1,6}:)?(?P<rest>.*)")
_TRACEBACK = re.compile(r"[ \t]*File \"(?P<path>[^\"\n]{1,1000})\", line (?P<n>\d{1,9})\b")
_HEADED_MATCH = re.compile(r"(?P<n>\d{1,9}):(?P<rest>.*)")
_TOOL_MESSAGE = re.compile(r"\s?(?:error|warning|note|info|hint|[A-Z]{1,4}\d{2,5})\b", re.I)
_LOOSE = re.compile(
    r"(?<![\w/.\\-])(?P<path>[\w][\w./\\-]{0,300}\.[A-Za-z][A-Za-z0-9]{0,9}):(?P<n>\d{1,9})"
)
FILE_KEYS = frozenset({"file", "path", "filename", "file_path", "filepath", "source_file"})
LINE_KEYS = ("line", "lines", "line_number", "linenumber", "start_line", "startline",
             "line_start", "linestart", "start")  # fmt: skip
END_KEYS = ("end_line", "endline", "line_end", "lineend", "end")
QUOTE_KEYS = ("code", "snippet", "quote", "text", "excerpt", "line_text", "match")
JSON_INFOS = frozenset({"json", "jsonc", "json5", "jsonl", "ndjson"})
MAX_JSON_DEPTH = 50
_JSON_MARKS = re.compile(r'\\.|["{}\n]')


@dataclass(frozen=True, kw_only=True)
class Found:
    """A citation a form found: where it is written and what it claims."""

    path: str
    first: int
    last: int
    start: int  # offset of the citation-like string
    end: int
    form: str
    quote: str | None = None
    block: tuple[str, ...] = ()
    anywhere: bool = False  # the lines count from the block's own first line


def fence_citations(info: str, offset: int, body: list[str]) -> list[Found]:
    """The citations a fence's info string makes about its own content."""
    ref = _CODE_REF.fullmatch(info)
    if ref and is_path_like(ref["path"].replace(" ", "_")):
        first, last = line_number(ref["a"]), line_number(ref["b"])
        start = offset + ref.start("a")
        return [
            Found(path=ref["path"], first=first, last=last, start=start,
                  end=offset + ref.end("path"), form="code-reference", block=tuple(body))
        ]  # fmt: skip
    title = _TITLE.search(info)
    if title is None:
        for word in re.finditer(r"\S+", info):
            cite = parse_cite(word.group())
            if cite:
                path, first, last = cite
                at = offset + word.start()
                return [
                    Found(
                        path=path,
                        first=first,
                        last=last,
                        start=at,
                        end=at + len(word.group()),
                        form="fence-info",
                        block=tuple(body),
                    )
                ]
        return []
    path = next(g for g in title.groups() if g)
    if not is_path_like(path.replace(" ", "_")):
        return []
    base_match = _BASE.search(info)
    base = int(base_match[1]) if base_match else 0
    marked = _BRACES.search(info) or _HL.search(info)
    start, end = offset + title.start(), offset + title.end()
    if marked is None:
        if not base:
            return []
        return [Found(path=path, first=base, last=base + max(0, len(body) - 1), start=start,
                      end=end, form="title-fence", block=tuple(body))]  # fmt: skip
    found = []
    for item in _RANGE.finditer(marked[1]):
        first = line_number(item[1])
        last = line_number(item[2]) or first
        shown = tuple(body[first - 1 : last]) if 1 <= first <= len(body) else tuple(body)
        if base:
            found.append(Found(path=path, first=base + first - 1, last=base + last - 1,
                               start=start, end=end, form="title-fence", block=shown))  # fmt: skip
        elif last > len(body):  # numbers beyond the block: the file's own line numbers
            found.append(Found(path=path, first=first, last=last, start=start, end=end,
                               form="title-fence", block=tuple(body)))  # fmt: skip
        else:  # lines of the block: where the block sits in the file is checked
            found.append(Found(path=path, first=first, last=last, start=start, end=end,
                               form="title-fence", block=tuple(body), anywhere=True))  # fmt: skip
    return found


def f_citations(text: str, start: int, end: int) -> list[Found]:
    """`【F:src/app/config.py†L12】` and `†L12-L20`, as coding agents write them."""
    return [
        Found(
            path=m["path"].strip(),
            first=line_number(m["a"]),
            last=line_number(m["b"]) or line_number(m["a"]),
            start=m.start(),
            end=m.end(),
            form="f-marker",
        )
        for m in _F_CITE.finditer(text, start, end)
    ]


def field_file(text: str, start: int, end: int) -> tuple[str, int, int] | None:
    """A `File: path` field on a line: (path, start, end), unless it carries its own lines."""
    match = _FIELD_FILE.match(text, start, end)
    if match is None:
        return None
    value = match["value"].strip("`*_\"'")
    if parse_cite(value) or not is_path_like(value):
        return None
    at = text.index(value, match.start("value"))
    return value, at, at + len(value)


def field_lines(text: str, start: int, end: int) -> tuple[int, int, int, int] | None:
    """A `Line: 12` / `Lines: 12-20` field on a line: (first, last, start, end)."""
    match = _FIELD_LINE.search(text, start, end)
    if match is None:
        return None
    first = line_number(match["a"])
    last = line_number(match["b"]) or first
    return first, last, match.start("a"), match.end("b") if match["b"] else match.end("a")


def grep_line(text: str, start: int, end: int, heading: str | None) -> Found | None:
    """`path:12:text` (grep -n, rg -n) or, under an rg heading line naming a file, `12:text`."""
    match = _GREP.fullmatch(text, start, end)
    if match and (is_spaced_path if " " in match["path"] else is_path_like)(match["path"]):
        path, line, rest = match["path"], match["n"], match["rest"]
        begin = match.start("path")
    elif heading is not None and (headed := _HEADED_MATCH.fullmatch(text, start, end)):
        path, line, rest = heading, headed["n"], headed["rest"]
        begin = headed.start("n")
    else:
        return None
    if _TOOL_MESSAGE.match(rest):  # a compiler's or linter's message, not the line's text
        return None
    number = line_number(line)
    return Found(path=path, first=number, last=number, start=begin, end=end, form="grep",
                 quote=rest.strip() or None)  # fmt: skip


def traceback_line(text: str, start: int, end: int) -> Found | None:
    """A Python traceback's `File "path", line N, in f` (its next line shows the code)."""
    match = _TRACEBACK.match(text, start, end)
    if match is None or not (is_spaced_path if " " in match["path"] else is_path_like)(
        match["path"]
    ):
        return None
    number = line_number(match["n"])
    return Found(path=match["path"], first=number, last=number, start=match.start("path"),
                 end=match.end("n"), form="code-block")  # fmt: skip


def json_citations(text: str, blocks: Sequence[tuple[int, str, str]] = ()) -> list[Found]:
    """JSON objects with a file field and a line field.

    A fenced block (`blocks`: content offset, body, info) that parses as JSON is read whole:
    every object in it, nested at any depth, with strings that hold quotes or braces. The rest
    of the text is scanned tolerantly, each innermost object read on its own.
    """
    found: list[Found] = []
    parsed: list[tuple[int, int]] = []
    for offset, body, info in blocks:
        words = info.split()
        if words and words[0].lower() not in JSON_INFOS:
            continue
        items = _json_block(body, offset)
        if items is not None:
            found += items
            parsed.append((offset, offset + len(body)))
    for start, end, leaf in _object_spans(text, 0, len(text), strict=False):
        if not leaf or end - start > MAX_OBJECT_CHARS:
            continue
        if any(a <= start < b for a, b in parsed):
            continue
        try:
            data = json.loads(text[start:end])
        except ValueError:
            continue
        item = _json_object(data, start, end)
        if item is not None:
            found.append(item)
    return sorted(found, key=lambda f: f.start)


def _json_block(body: str, offset: int) -> list[Found] | None:
    """Every citing object of a block that parses as JSON (or JSON Lines), else None."""
    try:
        documents = [(json.loads(body), 0, len(body))]
    except ValueError:
        documents = []
        position = 0
        for line in body.split("\n"):
            if line.strip():
                try:
                    documents.append((json.loads(line), position, position + len(line)))
                except ValueError:
                    return None
            position += len(line) + 1
    found = []
    for data, start, end in documents:
        objects = list(_walk(data))
        spans = sorted(_object_spans(body, start, end, strict=True))
        if len(spans) != len(objects):
            return None
        # the n-th object in document order opens at the n-th brace outside strings
        for item, (first, last, _) in zip(objects, spans, strict=True):
            cited = _json_object(item, offset + first, offset + last)
            if cited is not None:
                found.append(cited)
    return found if documents else None


def _walk(data: object, depth: int = 0) -> Iterator[dict[str, object]]:
    """The objects of a parsed document in document order (each before what it holds)."""
    if depth > MAX_JSON_DEPTH:
        return
    if isinstance(data, dict):
        yield data
        for value in data.values():
            yield from _walk(value, depth + 1)
    elif isinstance(data, list):
        for value in data:
            yield from _walk(value, depth + 1)


def _object_spans(text: str, start: int, end: int, *, strict: bool) -> list[tuple[int, int, bool]]:
    """(start, end, innermost) of each brace-delimited object, braces in strings skipped.

    One left-to-right pass over escapes, quotes, braces and newlines: linear in the text. Not
    strict (prose around the JSON), a quote left open closes at the line's end.
    """
    spans: list[tuple[int, int, bool]] = []
    stack: list[list[int]] = []  # [start, has a child object]
    in_string = False
    for match in _JSON_MARKS.finditer(text, start, end):
        mark = match.group()
        if mark == '"':
            in_string = not in_string
        elif mark == "\n":
            in_string = in_string and strict
        elif in_string or mark[0] == "\\":
            continue
        elif mark == "{":
            if stack:
                stack[-1][1] = 1
            stack.append([match.start(), 0])
        elif stack:
            opened, child = stack.pop()
            spans.append((opened, match.end(), not child))
    return spans


def loose_citations(text: str, taken: list[tuple[int, int]]) -> list[Found]:
    """Anything else shaped like `name.ext:12` that no form took: marked, never left bare."""
    found = []
    taken = sorted(taken)
    for match in _LOOSE.finditer(text):
        start, end = match.start(), match.end()
        index = bisect.bisect_right(taken, (end, end)) - 1
        if any(a < end and start < b for a, b in taken[max(0, index - 3) : index + 1]):
            continue
        before = text[max(0, start - 300) : start].rsplit(None, 1)[-1] if start else ""
        if "://" in before or "@" in before:
            continue  # inside a URL or an address
        path = match["path"]
        if path.rsplit(".", 1)[1].lower() in HOST_SUFFIXES:
            continue
        number = line_number(match["n"])
        found.append(Found(path=path if is_path_like(path) else "", first=number, last=number,
                           start=start, end=end, form="loose"))  # fmt: skip
    return found


def _json_object(data: object, start: int, end: int) -> Found | None:
    if not isinstance(data, dict):
        return None
    keys = {str(k).lower(): v for k, v in data.items()}
    path = next((v for k, v in keys.items() if k in FILE_KEYS and isinstance(v, str)), None)
    if not path or not is_spaced_path(path.strip()):  # a JSON string may hold spaces
        return None
    first = last = 0
    for key in LINE_KEYS:
        value = keys.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            first = last = value
        elif isinstance(value, str) and (m := _RANGE.fullmatch(value.strip())):
            first, last = line_number(m[1]), line_number(m[2]) or line_number(m[1])
        elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            first, last = value[0], value[-1]
        if first:
            break
    if not first:
        return None
    for key in END_KEYS:
        if isinstance(keys.get(key), int):
            last = keys[key]
            break
    quote = next((v for k in QUOTE_KEYS if isinstance(v := keys.get(k), str) and v.strip()), None)
    return Found(path=path.strip(), first=first, last=last, start=start, end=end, form="json",
                 quote=quote)  # fmt: skip
