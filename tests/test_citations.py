"""The citation scanner and checker: forms, false positives, marks, and hostile text.

Pure Python: the checker is given a reader over an in-memory tree (the engine's real reader,
with confinement and secrets, is tested in test_citation_reader.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from flows import citations
from flows.citation_scan import MAX_SCAN_CHARS, scan
from flows.citation_tokens import is_path_like
from flows.citations import MARK_VERIFIED, CheckStatus

TREE = {
    "app/auth.py": [
        "import hashlib",
        "",
        "",
        "def check(pw, stored):",
        "    return hashlib.md5(pw).hexdigest() == stored",
    ],
    "Makefile": ["run:", "\tpython -m app"],
    ".gitignore": ["*.pyc", ".env"],
}


class TreeReader:
    """Lines from TREE; counts how often each path is asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, cited_path: str, /) -> Sequence[str] | CheckStatus:
        self.asked.append(cited_path)
        path = cited_path.removeprefix("./")
        return TREE.get(path, CheckStatus.NO_SUCH_FILE)


def labels(text: str) -> list[str]:
    return [c.label for c in scan(text)]


def statuses(text: str) -> list[CheckStatus]:
    return [c.status for c in citations.check_all(text, TreeReader())]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("`app/auth.py:5`", ["app/auth.py:5"]),
        ("see app/auth.py:4-5.", ["app/auth.py:4-5"]),
        ("[check](app/auth.py#L4-L5)", ["app/auth.py:4-5"]),
        ("[app/auth.py:5](app/auth.py#L5)", ["app/auth.py:5"]),
        ("app/auth.py#L5", ["app/auth.py:5"]),
        ("app/auth.py:4\u20135 and app/auth.py:4\u20145", ["app/auth.py:4-5", "app/auth.py:4-5"]),
        ("app/auth.py:L5", ["app/auth.py:5"]),
        ("app/auth.py:5:12", ["app/auth.py:5"]),
        ("./app/auth.py:5", ["./app/auth.py:5"]),
        ("/srv/shop/app/auth.py:5", ["/srv/shop/app/auth.py:5"]),
        ("file:///srv/shop/app/auth.py#L5", ["/srv/shop/app/auth.py:5"]),
        (
            "Makefile:2, LICENSE:1, Dockerfile:3, Procfile:1",
            ["Makefile:2", "LICENSE:1", "Dockerfile:3", "Procfile:1"],
        ),
        (
            ".gitignore:2 and .github/workflows/ci.yml:4",
            [".gitignore:2", ".github/workflows/ci.yml:4"],
        ),
        ("`app/auth.py` line 5", ["app/auth.py:5"]),
        ("`app/auth.py`, lines 4 to 5", ["app/auth.py:4-5"]),
        ("lines 4-5 of `app/auth.py`", ["app/auth.py:4-5"]),
        ("line 5 in the file app/auth.py", ["app/auth.py:5"]),
        ("app/auth.py (line 5)", ["app/auth.py:5"]),
        ("L5 in app/auth.py", ["app/auth.py:5"]),
        ("`app/auth.py` L4-L5", ["app/auth.py:4-5"]),
        ("`app/auth.py`:5", ["app/auth.py:5"]),
        ("`app/auth.py`#L5", ["app/auth.py:5"]),
        ("**app/auth.py:5**", ["app/auth.py:5"]),
        ('  File "app/auth.py", line 5, in check', ["app/auth.py:5"]),
        ("In `app/auth.py`, the hash at line 5 is MD5.", ["app/auth.py:5"]),
        ("lines 1, 4 and 5 of app/auth.py", ["app/auth.py:1", "app/auth.py:4", "app/auth.py:5"]),
        ("app/auth.py:1,5", ["app/auth.py:1", "app/auth.py:5"]),
        ("| File | Line |\n|---|---|\n| `app/auth.py` | 5 |", ["app/auth.py:5"]),
        (
            "### `app/auth.py`\n\n- **Line 5:** MD5\n- L4: the check",
            ["app/auth.py:5", "app/auth.py:4"],
        ),
    ],
)
def test_it_finds_citations_in_the_forms_models_write(text: str, expected: list[str]):
    """Backticked or bare, colon or anchor, ranges with any dash, prose, tables, tracebacks."""
    assert labels(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "We meet at 10:30, and 12:30:45 is fine.",
        "A 3:1 ratio, 16:9 screens, John 3:16.",
        "Use python:3.12-slim or node:18, or ghcr.io/org/app:12.",
        "Connect to localhost:8000, example.com:443, db.internal:5432 or 127.0.0.1:6379.",
        "See https://github.com/org/repo/blob/main/app/auth.py#L5 and http://x.io/a.py:3.",
        "Versions v1.2.3, Django 5.2, Python 3.12.1, flask==1.1.4.",
        "e.g. line 5, i.e. line 6: no file named.",
        "Line 12 of the stack trace; lines 3-4 of the log.",
        "std::vector<int>, a.b.c, TCP port 80, HTTP/1.1, UTF-8.",
        "The `app/auth.py` module is small. Its line 5 hashes.",
    ],
)
def test_times_ratios_versions_hosts_and_urls_are_not_citations(text: str):
    """Only a path-like token with lines is a citation; the rest is left alone."""
    assert labels(text) == []


@pytest.mark.parametrize(
    ("name", "path_like"),
    [
        ("app/auth.py", True),
        ("Makefile", True),
        ("LICENSE", True),
        (".env", True),
        ("scripts/deploy", True),
        ("example.com", False),
        ("1.2.3", False),
        ("localhost", False),
        ("e.g", False),
        ("https://x.io/a.py", False),
        ("a" * 2000 + ".py", False),
    ],
)
def test_what_counts_as_a_path(name: str, path_like: bool):
    assert is_path_like(name) is path_like


def test_a_true_citation_with_its_quote_is_verified():
    """The lines exist and the quoted text sits there (whitespace collapsed)."""
    text = "- **MD5** (codebase) `app/auth.py:5` — `hashlib.md5(pw).hexdigest()  == stored`"
    assert statuses(text) == [CheckStatus.VERIFIED]


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("`app/auth.py:99`", CheckStatus.NO_SUCH_LINES),
        ("`app/auth.py:0`", CheckStatus.NO_SUCH_LINES),
        ("`app/auth.py:3-40`", CheckStatus.NO_SUCH_LINES),
        ("`app/auth.py:" + "9" * 40 + "`", CheckStatus.NO_SUCH_LINES),
        ("`app/login.py:3`", CheckStatus.NO_SUCH_FILE),
        ("`app/auth.py:5` — `bcrypt.hashpw(pw)`", CheckStatus.QUOTE_NOT_FOUND),
        ("`app/auth.py` (line 1) — `return check(pw)`", CheckStatus.QUOTE_NOT_FOUND),
    ],
)
def test_a_false_citation_is_caught_and_labelled(text: str, status: CheckStatus):
    """The report never presents an unchecked or false citation as verified."""
    [check] = citations.check_all(text, TreeReader())
    assert check.status == status
    marked = citations.annotate(text, [check])
    assert f"**[unverified: {status.value}]**" in marked
    assert MARK_VERIFIED not in marked


def test_quotes_may_elide_but_not_drift_unless_the_citation_says_around():
    """`...` elides; the quote must sit at the cited lines, and where it does sit is said."""
    ok = "`app/auth.py:4-5` — `def check(...) == stored`"
    assert statuses(ok) == [CheckStatus.VERIFIED]
    drifted = "`app/auth.py:4` — `== stored`"
    [check] = citations.check_all(drifted, TreeReader())
    assert check.status == CheckStatus.QUOTE_ELSEWHERE
    assert check.reason == "quoted code found at line 5, cited line 4"
    assert statuses("around line 4 of app/auth.py: `== stored`") == [CheckStatus.VERIFIED]
    reversed_order = "`app/auth.py:4` — `== stored ... def check`"
    assert statuses(reversed_order) == [CheckStatus.QUOTE_ELSEWHERE]
    far = "`app/auth.py:1` — `== stored`"
    assert statuses(far) == [CheckStatus.QUOTE_ELSEWHERE]


def test_marks_go_after_the_code_span_the_bold_and_the_link():
    """A mark never lands inside code, emphasis or a link, where it would not render."""
    text = "a `app/auth.py:1` b **app/auth.py:50** c [x](app/auth.py#L5) d"
    marked = citations.annotate(text, citations.check_all(text, TreeReader()))
    assert marked == (
        "a `app/auth.py:1` **[lines exist, claim not checked]** b **app/auth.py:50** "
        "**[unverified: no such lines]** c [x](app/auth.py#L5) **[lines exist, claim not checked]** d"
    )


def test_citations_in_a_code_block_are_marked_in_a_note_after_it():
    """The block stays as written; a line after it lists its citations with their marks."""
    text = '```\n  File "app/auth.py", line 5, in check\napp/nope.py:1: error\n```\nafter'
    marked = citations.annotate(text, citations.check_all(text, TreeReader()))
    assert marked.startswith(text.split("\nafter")[0] + "\n\n_Citations in the code block above:_")
    assert "`app/auth.py:5` **[lines exist, claim not checked]**" in marked
    assert "`app/nope.py:1` **[unverified: no such file]**" in marked
    assert marked.endswith("\nafter")


def test_an_unclosed_code_block_is_closed_before_its_note():
    text = "```\napp/auth.py:5:    return hashlib.md5(pw).hexdigest() == stored"
    marked = citations.annotate(text, citations.check_all(text, TreeReader()))
    assert marked == text + "\n```\n\n_Citations in the code block above:_ `app/auth.py:5` ✓\n"


def test_several_citations_in_one_phrase_share_one_mark_unless_their_grades_differ():
    text = "lines 4, 5 and 9 of app/auth.py"
    marked = citations.annotate(text, citations.check_all(text, TreeReader()))
    assert marked == text + (
        " `app/auth.py:4` **[lines exist, claim not checked]** `app/auth.py:5` **[lines exist, "
        "claim not checked]** `app/auth.py:9` **[unverified: no such lines]**"
    )
    same = "lines 4 and 5 of app/auth.py"
    marked = citations.annotate(same, citations.check_all(same, TreeReader()))
    assert marked == same + " **[lines exist, claim not checked]**"


def test_each_file_is_read_once_per_text():
    reader = TreeReader()
    citations.check_all("app/auth.py:1 app/auth.py:4 app/auth.py:5 nope.py:1 nope.py:2", reader)
    assert sorted(reader.asked) == ["app/auth.py", "nope.py"]


def test_a_reader_that_raises_fails_only_that_citation():
    """A reader must not raise; if one does, its citation is unreadable and the rest go on."""

    def fragile(path: str, /) -> Sequence[str] | CheckStatus:
        if path == "loop.py":
            raise RuntimeError("Symlink loop")
        return TREE.get(path, CheckStatus.NO_SUCH_FILE)

    checks = citations.check_all("loop.py:1 then app/auth.py:1", fragile)
    assert [c.status for c in checks] == [CheckStatus.UNREADABLE, CheckStatus.LINES_EXIST]


def test_beyond_the_check_limit_citations_are_flagged_not_checked():
    text = " ".join(f"app/auth.py:{i % 5 + 1}" for i in range(citations.MAX_CHECKED + 5))
    checks = citations.check_all(text, TreeReader())
    assert [c.status for c in checks[-5:]] == [CheckStatus.NOT_CHECKED] * 5
    assert "**[not checked: too many citations]**" in citations.annotate(text, checks)


def test_a_text_beyond_the_scan_cap_says_its_tail_was_not_checked():
    text = "x " * MAX_SCAN_CHARS + "app/auth.py:1"
    checks = citations.check_all(text, TreeReader())
    assert checks == []
    assert "**[not checked: citations after the first 200,000 characters]**" in citations.annotate(
        text, checks
    )


@pytest.mark.parametrize(
    "text",
    [
        "a/" * (MAX_SCAN_CHARS // 2),
        "a.py:1:" * (MAX_SCAN_CHARS // 7),
        "".join("`" * (i % 50 + 1) + "x" for i in range(MAX_SCAN_CHARS // 26)),
        "line 1 " * (MAX_SCAN_CHARS // 7),
        "[" * MAX_SCAN_CHARS,
        "[a](b#L1)" * (MAX_SCAN_CHARS // 9),
        "| File | Line |\n|---|---|\n" + "| a.py | 1 |\n" * (MAX_SCAN_CHARS // 13),
        "```\na.py:1\n" * (MAX_SCAN_CHARS // 10),
        "\x00\x01a.py:1\x7f" * (MAX_SCAN_CHARS // 9),
        "_" * MAX_SCAN_CHARS,
    ],
    ids=[
        "long-path",
        "colons",
        "backtick-runs",
        "line-words",
        "brackets",
        "links",
        "table",
        "fences",
        "control-bytes",
        "underscores",
    ],
)
def test_hostile_text_is_scanned_in_linear_time_and_never_raises(text: str):
    """Texts that make a backtracking scanner take hours finish (bench/citation_scan.py times
    them: about a second at most at the cap); every citation found is a well-formed one."""
    checks = citations.check_all(text, TreeReader())
    marked = citations.annotate(text, checks)
    assert len(marked) >= len(text)
    for check in checks:
        assert check.citation.start >= 0
        assert "\x00" not in check.citation.path
