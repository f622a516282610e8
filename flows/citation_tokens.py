"""One token of a model's text, read on its own: a citation, a path, a line word, a number?

A path-like token is a path with a directory part, a file name whose extension has a letter
in it (and a letter in its stem), a dotfile, or a well-known extensionless name (Makefile,
LICENSE, ...). Hosts (example.com), registries (ghcr.io/org/app), versions (1.2.3) and URLs
are not. Every pattern here is anchored and reads one token, so none can backtrack across
the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PATH_CHARS = 1_024
TOO_LONG_LINE = 10**9  # a line number no file has, for digits too long to be a real one

_CITE = re.compile(
    r"(?P<path>[^:#]+)(?:"
    r":L?(?P<a>\d+)(?:[-\u2013\u2014]L?(?P<b>\d+))?(?::\d+(?:[-\u2013\u2014]\d+(?::\d+)?)?)?"
    r"|#L(?P<c>\d+)(?:C\d+)?(?:[-\u2013\u2014]L?(?P<d>\d+)(?:C\d+)?)?"
    r")"
)
# A locator written apart from its path: `app.py`:12, `app.py`#L12
_LOCATOR = re.compile(
    r":L?(?P<a>\d+)(?:[-\u2013\u2014]L?(?P<b>\d+))?(?::\d+)?"
    r"|#L(?P<c>\d+)(?:[-\u2013\u2014]L?(?P<d>\d+))?"
)
NUMBER = re.compile(r"#?(?P<a>\d+)(?:[-\u2013\u2014](?P<b>\d+))?")
L_NUMBER = re.compile(r"L(?P<a>\d+)(?:[-\u2013\u2014]L?(?P<b>\d+))?")
_PATH_MARKS = re.compile(r"[:#./]")  # a path or a locator has one of these
_PATH_CHARS = re.compile(r"[\w.\-/+@~\\%]+")
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,10}")

# Well-known files without an extension (compared case-insensitively).
KNOWN_NAMES = frozenset(
    (  # noqa: SIM905 (a word list reads better as words)
        "makefile gnumakefile dockerfile containerfile procfile gemfile rakefile jenkinsfile "
        "vagrantfile brewfile justfile pipfile caddyfile tiltfile snakefile earthfile guardfile "
        "podfile fastfile license licence copying notice authors contributors readme changelog "
        "changes history install codeowners owners build workspace version manifest"
    ).split()
)
# Known names that are also ordinary words: a file only when written with a capital
# (`BUILD:6`, `License:1`), never as a word of the sentence (`build:6-8`, `the install:2 step`).
WORD_NAMES = frozenset(
    (  # noqa: SIM905
        "license licence copying notice authors contributors readme changelog changes history "
        "install owners build workspace version manifest"
    ).split()
)
# Extensions that make a bare `name.ext:N` a host and port rather than a file.
HOST_SUFFIXES = frozenset(
    (  # noqa: SIM905
        "com org net io dev edu gov mil int local internal lan localdomain localhost cloud "
        "example test invalid arpa co uk de fr nl eu us ca au jp cn ru"
    ).split()
)
NOT_FILES = frozenset({"e.g", "i.e", "a.k.a", "n.b", "p.s", "w.r.t", "approx"})
LINE_WORDS = frozenset({"line", "lines", "ln"})
RANGE_WORDS = frozenset({"-", "\u2013", "\u2014", "to", "through", "thru"})


@dataclass(kw_only=True)
class Token:
    start: int
    end: int  # after the token's meaningful part (trailing punctuation left out)
    raw_end: int  # after the whole token
    text: str  # the meaningful part
    kind: str = "word"  # cite | colon | path | line | num | lnum | range | word
    cite: tuple[str, int, int] | None = None  # (path, first, last) for "cite"; "" path for colon
    used: bool = False  # already part of a citation


def read_token(raw: str, start: int) -> Token:
    """The token `raw` found at `start`, with its kind."""
    end = start + len(raw)
    text = raw.rstrip(".:!?")
    if text.startswith("_") and text.endswith("_") and not text.startswith("__"):
        text = text[1:-1]  # _app.py:12_ as emphasis
        start += 1
    token = Token(start=start, end=start + len(text), raw_end=end, text=text)
    marked = _PATH_MARKS.search(text) is not None  # most words are not: skip the costly tests
    if marked:
        if cite := parse_cite(text):
            token.kind, token.cite = "cite", cite
            return token
        if locator := _LOCATOR.fullmatch(text):
            first = line_number(locator["a"] or locator["c"])
            last = line_number(locator["b"] or locator["d"]) or first
            token.kind, token.cite = "colon", ("", first, last)
            return token
    lowered = text.lower()
    if known_name(text) or (marked and is_path_like(text.removeprefix("file://"))):
        token.kind = "path"
    elif lowered in LINE_WORDS:
        token.kind = "line"
    elif NUMBER.fullmatch(text):
        token.kind = "num"
    elif L_NUMBER.fullmatch(text):
        token.kind = "lnum"
    elif lowered in RANGE_WORDS:
        token.kind = "range"
    return token


def is_path_like(path: str) -> bool:
    """A token that names a file: see the module docstring for the rule."""
    if not path or len(path) > MAX_PATH_CHARS or "://" in path:
        return False
    if not _PATH_CHARS.fullmatch(path) or not any(c.isalpha() for c in path):
        return False
    bare = path.removeprefix("~").lstrip("/")
    while bare.startswith("./"):
        bare = bare[2:]
    parts = bare.split("/")
    name = parts[-1]
    if not name or name in (".", ".."):
        return False
    if len(parts) > 1:
        first = parts[0]
        # registry/host prefixes (ghcr.io/org/app:12) are images, not files
        return not ("." in first and first.rsplit(".", 1)[1].lower() in HOST_SUFFIXES)
    return _is_file_name(name)


_NOT_PATH_WORDS = frozenset(
    ("see", "in", "at", "on", "from", "of", "file", "open", "edit", "run", "check", "line")
)


def is_spaced_path(path: str) -> bool:
    """A path that may hold spaces (`tools/export report.py`), not a phrase ending in one."""
    words = path.split(" ")
    if len(words) > 5 or words[0].lower() in _NOT_PATH_WORDS or path != path.strip():
        return False
    if any(not w or w.endswith((":", ",")) for w in words):
        return False
    return is_path_like(path.replace(" ", "_"))


def parse_cite(token: str) -> tuple[str, int, int] | None:
    """(path, first line, last line) for a path with its lines attached, else None."""
    match = _CITE.fullmatch(token.removeprefix("file://"))
    if match is None or not is_path_like(match["path"]):
        return None
    first = line_number(match["a"] or match["c"])
    return match["path"], first, line_number(match["b"] or match["d"]) or first


def line_range(token: Token) -> tuple[int, int]:
    """(first, last) of a "num" (12, 12-20, #12) or "lnum" (L12, L12-L20) token."""
    match = (NUMBER if token.kind == "num" else L_NUMBER).fullmatch(token.text)
    if match is None:  # only called on tokens whose kind came from these patterns
        return 0, 0
    first = line_number(match["a"])
    return first, line_number(match["b"]) or first


def line_number(digits: str | None) -> int:
    """A line number; absurdly long ones become one no file has (and cost nothing to parse)."""
    if not digits:
        return 0
    return int(digits) if len(digits) <= 9 else TOO_LONG_LINE


def known_name(name: str) -> bool:
    """A well-known extensionless file name, as written (see WORD_NAMES)."""
    lowered = name.lower()
    if lowered not in KNOWN_NAMES:
        return False
    return lowered not in WORD_NAMES or name != lowered


def _is_file_name(name: str) -> bool:
    lowered = name.lower()
    if known_name(name):
        return True
    if lowered in KNOWN_NAMES:
        return False
    if lowered in NOT_FILES:
        return False
    if name.startswith(".") and len(name) > 1 and name[1].isalpha():
        return True  # a dotfile: .gitignore, .env
    if "." not in name:
        return False
    stem, ext = name.rsplit(".", 1)
    return (
        bool(_EXTENSION.fullmatch(ext))
        and any(c.isalpha() for c in ext)
        and any(c.isalpha() for c in stem)
        and ext.lower() not in HOST_SUFFIXES
    )
