"""Model output as HTML: Markdown rendered on the server, then sanitised. Never trusted."""

from __future__ import annotations

import re
import threading

import markdown
import nh3

_ALLOWED = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "del",
}


_local = threading.local()

# nh3 writes a tree back out: "<" in text or in an attribute value becomes &lt;, and every value
# is double-quoted with its quotes escaped. So each "<" starts a real tag, and this matches it
# whole; it reads a quoted value whole too, so even a "<table>" kept inside one is never a tag.
_TAG = re.compile(r'<(/?)([a-z][a-z0-9]*)[^<>"]*(?:"[^"]*"[^<>"]*)*>')
_CELLS = frozenset({"td", "th"})
# A run this long with no space in a table cell (a path, a URL, a hash) gets places to wrap.
_LONG_WORD = re.compile(r"\S{24,}")
# One character of escaped text: an entity such as &amp; is one, never cut.
_UNIT = re.compile(r"&#?[a-zA-Z0-9]{1,32};|.", re.S)
_SEPARATORS = frozenset(["&amp;", *"/\\._-?=,:;#@+~|"])
_MOST_UNBROKEN = 16  # characters in a row without a place to wrap, at most


def _parser() -> markdown.Markdown:
    """One parser per thread, reset between documents: building one (with its extensions)
    costs milliseconds, more than converting a report."""
    if not hasattr(_local, "parser"):
        _local.parser = markdown.Markdown(extensions=["tables", "fenced_code"])
    parser: markdown.Markdown = _local.parser
    return parser.reset()


def render_markdown(text: str) -> str:
    """Markdown -> HTML with only harmless tags and no attributes but safe links; each table
    in a frame of its own that scrolls sideways when the table is wider than the page."""
    return framed_tables(sanitised_markdown(text))


def sanitised_markdown(text: str) -> str:
    """Markdown -> HTML through nh3: the tags above, safe links, nothing else."""
    return nh3.clean(
        _parser().convert(text or ""),
        tags=_ALLOWED,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https"},
        link_rel="noopener noreferrer nofollow",
    )


def framed_tables(html: str) -> str:
    """Sanitised HTML with each table in a <div class="table-scroll"> and the long words of
    its cells given places to wrap (<wbr>). Only this fixed markup is added, between nh3's
    tags, so nothing the model wrote becomes a tag or an attribute. The last step: a pattern
    that reads the tags inside a link runs before it, and sees none of these."""
    if "<table>" not in html:
        return html
    out: list[str] = []
    cells = 0  # how deep inside table cells the text is
    at = 0
    for tag in _TAG.finditer(html):
        text = html[at : tag.start()]
        out.append(_wrappable(text) if cells else text)
        closing, name = tag[1] == "/", tag[2]
        if name == "table":
            out.append("</table></div>" if closing else '<div class="table-scroll"><table>')
        else:
            out.append(tag[0])
        if name in _CELLS:
            cells = max(0, cells - 1) if closing else cells + 1
        at = tag.end()
    out.append(html[at:])
    return "".join(out)


def _wrappable(text: str) -> str:
    """Escaped text with a <wbr> after each separator of a long word (a path's slashes, a
    URL's punctuation), and at least every _MOST_UNBROKEN characters of one (a hash)."""
    return _LONG_WORD.sub(lambda word: _break_points(word[0]), text)


def _break_points(word: str) -> str:
    pieces: list[str] = []
    unbroken = 0
    for unit in _UNIT.findall(word):
        pieces.append(unit)
        unbroken += 1
        if unit in _SEPARATORS or unbroken >= _MOST_UNBROKEN:
            pieces.append("<wbr>")
            unbroken = 0
    if pieces and pieces[-1] == "<wbr>":
        pieces.pop()
    return "".join(pieces)
