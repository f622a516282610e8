"""Graded marks, paths as people write them, and the forms agent tools write.

Pure Python: the checker reads an in-memory tree through a reader that can also list the files
carrying a name (as the engine's ConfinedLines does).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from flows.citations import CheckStatus, Grade, annotate, check_all

TREE = {
    "src/app/utils.py": [f"# line {n}" for n in range(1, 12)]
    + ["    return int(float(amount) * 100)"]
    + [f"# line {n}" for n in range(13, 24)]
    + ["def retry(times):", "    pass"]
    + [f"# line {n}" for n in range(26, 41)],
    "lib/utils.py": ["x = 1"],
    "src/app/handlers.py": ["import os", "", "def handle(request):", "    return os.getcwd()"],
    "src/app/config.py": [f"SETTING_{n} = {n}" for n in range(1, 21)],
    "web/src/components/InvoiceTable.tsx": [
        "export function InvoiceTable() {",
        "  return null;",
        "}",
    ],
    "docs/monthly report.md": ["# Monthly", "Totals are rounded."],
    "build/webhook.py": ["def webhook(payload):", "    verify(payload)"],
    "app/payments/signing.py": [f"# line {n}" for n in range(1, 7)]
    + ["def sign_payload(payload):", "    return hashlib.sha256(payload).hexdigest()"],
    "app/hooks.py": [f"# line {n}" for n in range(1, 20)] + ["    event = json.loads(body)"],
    "app/legacy_import.py": [
        "import csv",
        "",
        "",
        "",
        "def total_of(rows):",
        "    reader = csv.DictReader(rows)",
        "    total = 0",
        "    for row in reader:",
        "        pass",
        "",
        "",
        "",
        "",
        '    total += int(row["amount"])',
    ],
    "app/ledger.py": [f"# line {n}" for n in range(1, 69)]
    + ["def refund(cents):", "    refund_cents = abs(cents)", "    return refund_cents"],
    "tools/export report.py": [f"# line {n}" for n in range(1, 12)]
    + ['        print(row["order"], format_cents(row["cents"]))'],
    "app/orders.py": [
        "def mark_paid(order_id, amount):",
        "    query = f\"UPDATE orders SET paid = {amount} WHERE id = '{order_id}'\"",
        "    return query",
    ],
    "web/Invoice.tsx": ["", "", "  <div dangerouslySetInnerHTML={{ __html: invoice.notes }} />"],
}


class TreeReader:
    """Lines from TREE, and the files carrying a name (the FileIndex protocol)."""

    def __call__(self, cited_path: str, /) -> Sequence[str] | CheckStatus:
        return TREE.get(cited_path.removeprefix("./"), CheckStatus.NO_SUCH_FILE)

    def files_named(self, name: str, /) -> Sequence[str]:
        return [path for path in TREE if path.rsplit("/", 1)[-1] == name]


def graded(text: str) -> list[tuple[str, Grade, str]]:
    return [(c.citation.label, c.grade, c.reason) for c in check_all(text, TreeReader())]


def test_a_quote_at_the_cited_line_earns_the_check_mark():
    assert graded("`src/app/utils.py:12` — `return int(float(amount) * 100)`") == [
        ("src/app/utils.py:12", Grade.VERIFIED, "verified")
    ]


def test_a_quote_found_only_elsewhere_is_flagged_with_where_it_is():
    [(_, grade, reason)] = graded("`src/app/utils.py:20`: `return int(float(amount) * 100)`")
    assert grade == Grade.FLAGGED
    assert reason == "quoted code found at line 12, cited line 20"


def test_a_quote_written_before_the_citation_is_still_its_claim():
    text = "The cents are computed by `return int(float(amount) * 100)` (src/app/utils.py:20)."
    [(_, grade, reason)] = graded(text)
    assert grade == Grade.FLAGGED
    assert "line 12" in reason


def test_a_named_symbol_absent_from_the_lines_is_flagged():
    [(_, grade, reason)] = graded("the `retry_forever()` helper (src/app/utils.py:24) loops")
    assert grade == Grade.FLAGGED
    assert reason == "`retry_forever()` is not at line 24"
    assert graded("the `retry()` helper (src/app/utils.py:24) loops")[0][1] == Grade.VERIFIED


def test_a_citation_with_nothing_checkable_only_says_its_lines_exist():
    text = "Amounts are truncated (src/app/utils.py:12)."
    assert graded(text) == [
        ("src/app/utils.py:12", Grade.LINES_EXIST, "lines exist, claim not checked")
    ]
    marked = annotate(text, check_all(text, TreeReader()))
    assert "✓" not in marked
    assert "**[lines exist, claim not checked]**" in marked


def test_a_reversed_range_is_flagged_not_read_as_its_first_line():
    assert graded("`src/app/utils.py:31-24`") == [
        ("src/app/utils.py:31-24", Grade.FLAGGED, "reversed range 31-24")
    ]


def test_two_lines_of_drift_no_longer_verify_unless_the_citation_says_around():
    assert graded("`src/app/utils.py:10` — `return int(`")[0][1] == Grade.FLAGGED
    assert graded("around line 10 of src/app/utils.py: `return int(`")[0][1] == Grade.VERIFIED


@pytest.mark.parametrize(
    ("text", "grade", "resolved"),
    [
        ("`handlers.py:3` — `def handle(request):`", Grade.VERIFIED, "src/app/handlers.py"),
        ("`webhook.py:2` — `verify(payload)`", Grade.VERIFIED, "build/webhook.py"),
        ("`src\\app\\handlers.py:4` — `os.getcwd()`", Grade.VERIFIED, "src/app/handlers.py"),
        ("`docs/monthly report.md:2` — `rounded`", Grade.VERIFIED, ""),
        ("[InvoiceTable.tsx:41](web/src/components/InvoiceTable.tsx#L1)", Grade.LINES_EXIST, ""),
    ],
)
def test_paths_are_resolved_as_people_write_them(text: str, grade: Grade, resolved: str):
    [check] = check_all(text, TreeReader())
    assert check.grade == grade, check.reason
    assert check.resolved == resolved


def test_a_bare_name_two_files_carry_is_flagged_as_ambiguous():
    [(_, grade, reason)] = graded("`utils.py:1`")
    assert grade == Grade.FLAGGED
    assert reason.startswith("ambiguous: 2 files named utils.py")


def test_a_word_of_the_sentence_is_never_taken_for_a_path():
    assert graded("the build:6-8 step and the install:2 target") == []


@pytest.mark.parametrize(
    ("text", "label", "grade"),
    [
        ("```40:46:src/app/handlers.py\nx\n```", "src/app/handlers.py:40-46", Grade.FLAGGED),
        (
            "```3:4:src/app/handlers.py\ndef handle(request):\n    return os.getcwd()\n```",
            "src/app/handlers.py:3-4",
            Grade.VERIFIED,
        ),
        (
            "See 【F:src/app/config.py†L12】 for `SETTING_12`.",
            "src/app/config.py:12",
            Grade.VERIFIED,
        ),
        ("See 【F:src/app/config.py†L12-L20】.", "src/app/config.py:12-20", Grade.LINES_EXIST),
        (
            '```python title="src/app/config.py" {2}\nSETTING_1 = 1\nSETTING_2 = 2\n```',
            "src/app/config.py:2",
            Grade.VERIFIED,
        ),
        (
            '```python title="src/app/config.py" hl_lines="1" linenums="7"\nSETTING_7 = 7\n```',
            "src/app/config.py:7",
            Grade.VERIFIED,
        ),
        (
            "**File:** `src/app/config.py`\n**Line:** 5\n**Code:** `SETTING_5 = 5`",
            "src/app/config.py:5",
            Grade.VERIFIED,
        ),
        (
            '```json\n{"file": "src/app/config.py", "line": 9, "code": "SETTING_8 = 8"}\n```',
            "src/app/config.py:9",
            Grade.FLAGGED,
        ),
        ("```\nsrc/app/config.py:3:SETTING_3 = 3\n```", "src/app/config.py:3", Grade.VERIFIED),
        (
            "```\n$ rg -n SETTING\nsrc/app/config.py\n4:SETTING_4 = 4\n```",
            "src/app/config.py:4",
            Grade.VERIFIED,
        ),
    ],
)
def test_the_forms_agent_tools_write_are_checked(text: str, label: str, grade: Grade):
    checks = check_all(text, TreeReader())
    assert [(c.citation.label, c.grade) for c in checks] == [(label, grade)], [
        c.reason for c in checks
    ]


def test_anything_else_shaped_like_a_citation_is_marked_not_left_bare():
    text = "Compare https://example.com/a.py:3 with weird|config.py:3 here."
    checks = check_all(text, TreeReader())
    assert [c.citation.label for c in checks] == ["config.py:3"]
    assert checks[0].grade == Grade.LINES_EXIST
    marked = annotate(text, checks)
    assert "**[lines exist, claim not checked]**" in marked


def test_each_check_spans_its_citation_like_string():
    text = "x `src/app/config.py:3` y\n```\nsrc/app/config.py:4:SETTING_4 = 4\n```\n"
    for check in check_all(text, TreeReader()):
        written = text[check.citation.start_offset : check.citation.end_offset]
        assert written.startswith("src/app/config.py:")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "Signing 【F:app/payments/signing.py†L7-L8】: `sign_payload` hashes with `hashlib.md5`.",
            "named code not at those lines: hashlib.md5",
        ),
        ("`app/hooks.py:20` hands the body to `pickle.loads` unchecked.", "`pickle.loads`"),
        (
            "【F:app/payments/signing.py†L7-L8】 `sign_payload` uses `hashlib.md5` instead of "
            "`hashlib.sha256`.",
            "named code not at those lines: hashlib.md5",
        ),
        ("Rows are read with `csv.reader` (`app/legacy_import.py:6-8`).", "`csv.reader`"),
        ("Refunds flip the sign, `cents = -cents`, at `app/ledger.py:69-71`.", "`cents = -cents`"),
    ],
)
def test_a_false_citation_is_flagged_when_only_part_of_what_its_sentence_names_is_there(
    text: str, reason: str
):
    """Every name the sentence gives the citation must be at the lines: one present name does
    not vouch for an absent one, a dotted name is matched whole and case-sensitively, and an
    expression is matched whole (spacing aside), never by one of its tokens."""
    [(_, grade, said)] = graded(text)
    assert grade == Grade.FLAGGED
    assert said == reason or said.startswith(reason), said


@pytest.mark.parametrize(
    "text",
    [
        "Signing 【F:app/payments/signing.py†L7-L8】: `sign_payload` hashes with `hashlib.sha256`.",
        "`app/hooks.py:20` hands the body to `json.loads`.",
        "`app/hooks.py:20` calls `json.loads` without `pickle.loads`; `yaml.load` is not used.",
        "At `app/payments/signing.py:8` `sign_payload` should use `hmac.new` instead.",
        "Rows are read with `csv.DictReader` (`app/legacy_import.py:6-8`).",
        "Refunds take `refund_cents = abs(cents)` at `app/ledger.py:69-71`.",
        "Refunds take `refund_cents=abs( cents )` at `app/ledger.py:69-71`.",
        'The `total_of` loop adds `int(row["amount"])` at `app/legacy_import.py:14`.',
    ],
)
def test_a_true_citation_whose_sentence_names_only_what_is_there_is_verified(text: str):
    """The function the cited lines are in may be named too (its header is above them)."""
    [(_, grade, said)] = graded(text)
    assert grade == Grade.VERIFIED, said


def test_names_given_to_another_citation_of_the_sentence_are_that_ones_claims():
    text = "`sign_payload` is at `app/payments/signing.py:7` and `json.loads` in `app/hooks.py:20`."
    assert [g for _, g, _ in graded(text)] == [Grade.VERIFIED, Grade.VERIFIED]
    text = "`json.loads` at `app/payments/signing.py:7` and `sign_payload` in `app/hooks.py:20`."
    assert [g for _, g, _ in graded(text)] == [Grade.FLAGGED, Grade.FLAGGED]


GREP_WITH_SPACE = (
    "```\n$ rg -n format_cents\n"
    'tools/export report.py:12:        print(row["order"], format_cents(row["cents"]))\n```'
)
TRACEBACK = (
    "```\nTraceback (most recent call last):\n"
    '  File "app/legacy_import.py", line 14, in total_of\n'
    '    total += int(row["amount"])\n'
    '  File "tools/export report.py", line 12, in main\n'
    "    print(row)\n"
    "ValueError: invalid literal\n```"
)
JSON_FINDINGS = (
    "```json\n"
    '{"findings": [\n'
    '  {"file": "app/orders.py", "line": 2, "code": "query = f\\"UPDATE orders SET paid = '
    "{amount} WHERE id = '{order_id}'\\\"\"},\n"
    '  {"file": "web/Invoice.tsx", "start_line": 3, "end_line": 3, '
    '"snippet": "<div dangerouslySetInnerHTML={{ __html: invoice.notes }} />"},\n'
    '  {"file": "tools/export report.py", "line": 12, "meta": {"severity": "low"}, '
    '"text": "print(row[\\"order\\"], format_cents(row[\\"cents\\"]))"},\n'
    '  {"file": "app/orders.py", "line": 3, "quote": "return paid"}\n'
    "]}\n```"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GREP_WITH_SPACE, [("tools/export report.py:12", Grade.VERIFIED)]),
        (
            TRACEBACK,
            [
                ("app/legacy_import.py:14", Grade.VERIFIED),
                ("tools/export report.py:12", Grade.FLAGGED),
            ],
        ),
        (
            JSON_FINDINGS,
            [
                ("app/orders.py:2", Grade.VERIFIED),
                ("web/Invoice.tsx:3", Grade.VERIFIED),
                ("tools/export report.py:12", Grade.VERIFIED),
                ("app/orders.py:3", Grade.FLAGGED),
            ],
        ),
    ],
)
def test_tool_output_in_code_blocks_is_checked_by_the_text_it_shows(
    text: str, expected: list[tuple[str, Grade]]
):
    """grep output with a space in its path, a traceback's code line under its `File` line,
    and a JSON block parsed whole (escaped quotes, braces in strings, nested objects)."""
    checks = check_all(text, TreeReader())
    assert [(c.citation.label, c.grade) for c in checks] == expected, [c.reason for c in checks]
    marked = annotate(text, checks)
    assert marked.count("✓") == [g for _, g in expected].count(Grade.VERIFIED)


def test_json_that_does_not_parse_is_still_read_object_by_object():
    broken = JSON_FINDINGS.replace("\n]}", ",\n]}")  # a trailing comma
    labels = [c.citation.label for c in check_all(broken, TreeReader())]
    assert labels[:2] == ["app/orders.py:2", "web/Invoice.tsx:3"]
