"""Model output as HTML: Markdown rendered on the server, then sanitised. Never trusted."""

from __future__ import annotations

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


def _parser() -> markdown.Markdown:
    """One parser per thread, reset between documents: building one (with its extensions)
    costs milliseconds, more than converting a report."""
    if not hasattr(_local, "parser"):
        _local.parser = markdown.Markdown(extensions=["tables", "fenced_code"])
    parser: markdown.Markdown = _local.parser
    return parser.reset()


def render_markdown(text: str) -> str:
    """Markdown -> HTML with only harmless tags and no attributes but safe links."""
    html = _parser().convert(text or "")
    return nh3.clean(
        html,
        tags=_ALLOWED,
        attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https"},
        link_rel="noopener noreferrer nofollow",
    )
