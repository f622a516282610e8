"""Stable finding ids, their normalisation, the comparison of two runs, and kept excerpts."""

from __future__ import annotations

from flows.citation_scan import Citation
from flows.citations import check_all
from flows.excerpts import excerpt, segments
from flows.finding_ids import (
    NEW,
    RESOLVED,
    STILL_PRESENT,
    anchor,
    compare,
    finding_id,
    normalise_claim,
    normalise_path,
    normalise_text,
    render_comparison,
)
from flows.findings import read_findings
from runs.engine.report.report_evidence import mark_changes


def quoted(path: str, quote: str | None, claim: str = "Shell", line: int = 6) -> dict:
    return {
        "claim": claim,
        "citations": [{"citation": f"{path}:{line}", "path": path, "start": line, "quote": quote}],
    }


def test_normalisation_collapses_whitespace_and_elisions_but_keeps_case():
    assert normalise_text("  return   subprocess.run(cmd,\tshell=True) ... ") == (
        "return subprocess.run(cmd, shell=True)"
    )
    assert normalise_text("Eval(x)") != normalise_text("eval(x)")
    assert normalise_text("a\x00b\u200bc") == "a b c"
    assert normalise_text("…x…") == "x"
    assert normalise_claim("**Shell** injection.") == "**Shell** injection"


def test_paths_lose_dot_prefixes_and_an_absolute_path_inside_the_target_becomes_relative():
    assert normalise_path("./app//./views.py") == "app/views.py"
    assert normalise_path("/srv/shop/app/views.py", "/srv/shop") == "app/views.py"
    assert normalise_path("/etc/passwd", "/srv/shop") == "/etc/passwd"
    assert normalise_path("app\\views.py") == "app/views.py"


def test_an_id_ignores_line_numbers_and_quote_spacing():
    first = quoted("app/views.py", "return subprocess.run(cmd, shell=True)", line=6)
    moved = quoted("./app/views.py", "return  subprocess.run(cmd,  shell=True)", line=40)
    assert finding_id(first) == finding_id(moved)
    assert finding_id(first).startswith("f-") and len(finding_id(first)) == 18


def test_an_id_changes_with_the_path_or_the_quote_but_not_with_the_claim():
    base = quoted("app/views.py", "shell=True")
    assert finding_id(base) != finding_id(quoted("app/other.py", "shell=True"))
    assert finding_id(base) != finding_id(quoted("app/views.py", "shell=False"))
    assert finding_id(base) == finding_id(quoted("app/views.py", "shell=True", claim="Other"))


def test_a_finding_without_a_quote_anchors_on_its_path_and_claim():
    plain = quoted("app/views.py", None, claim="Shell  injection.")
    assert anchor(plain) == ("claim", "app/views.py", "Shell injection")
    assert finding_id(plain) == finding_id(quoted("app/views.py", "", claim="Shell injection"))
    assert finding_id(plain) != finding_id(quoted("app/other.py", None, claim="Shell injection"))
    uncited = {"claim": "Totals may overflow", "citations": []}
    assert anchor(uncited) == ("claim", "", "Totals may overflow")


def test_the_first_quoted_citation_is_the_anchor():
    finding = {
        "claim": "x",
        "citations": [
            {"path": "a.py", "quote": None},
            {"path": "b.py", "quote": "needle"},
        ],
    }
    assert anchor(finding) == ("quote", "b.py", "needle")


def test_comparison_says_new_still_present_and_resolved():
    before = [{"id": "f-a", "claim": "A"}, {"id": "f-b", "claim": "B"}]
    now = [{"id": "f-b"}, {"id": "f-c"}, {"id": "f-c"}]
    result = compare(before, now)
    assert result["changes"] == {"f-b": STILL_PRESENT, "f-c": NEW}
    assert [f["id"] for f in result["resolved"]] == ["f-a"]
    assert result["counts"] == {"new": 1, "still_present": 1, "resolved": 1}
    assert RESOLVED == "resolved"


def test_the_comparison_section_shows_hostile_claims_as_plain_text():
    section = render_comparison(
        {
            "previous": {"id": "12345678-aaaa", "finished_at": "2025-01-02T03:04:05+00:00"},
            "counts": {"new": 0, "still_present": 0, "resolved": 1},
            "resolved": [
                {"claim": "<script>alert(1)</script>\n## Summary", "citation": "a`b.py:1"}
            ],
        }
    )
    assert "\\<script\\>" in section and "\n## Summary" not in section
    assert "`a'b.py:1`" in section
    assert "0 new, 0 still present, 1 resolved" in section


def test_an_excerpt_keeps_context_and_locates_the_quote():
    lines = [f"line {n}" for n in range(1, 21)]
    lines[9] = "    return  subprocess.run(cmd, shell=True)"
    citation = Citation(
        path="a.py",
        start=10,
        end=10,
        quote="subprocess.run(cmd, shell=True)",
        form="colon",
        start_offset=0,
        end_offset=0,
    )
    kept = excerpt(citation, lines, redact=str)
    assert kept["first"] == 7 and len(kept["lines"]) == 7
    [[number, start, end]] = kept["marks"]
    assert number == 10 and lines[9][start:end] == "subprocess.run(cmd, shell=True)"
    assert segments(lines[9], [[start, end]]) == [
        ("    return  ", False),
        ("subprocess.run(cmd, shell=True)", True),
    ]


def test_an_excerpt_of_a_long_range_is_capped_and_says_so():
    lines = ["x" * 5000] * 200
    citation = Citation(
        path="a.py", start=1, end=200, quote=None, form="colon", start_offset=0, end_offset=0
    )
    kept = excerpt(citation, lines, redact=str)
    assert len(kept["lines"]) == 43 and kept["lines_left_out"] == 160
    assert all(len(line) < 410 for line in kept["lines"])


def test_change_markers_go_after_the_bullet_and_citation_marks_still_land_after_citations():
    body = "## Findings\n- **Shell** (codebase) `a.py:1`\n- **Other** (codebase) `a.py:2`\n"
    checks = check_all(body, lambda path: ["one", "two"])
    findings = [{"change": NEW}, {"change": STILL_PRESENT}]
    marked, moved = mark_changes(body, checks, findings)
    assert "- **[new]** **Shell**" in marked and "- **[still present]** **Other**" in marked
    for item in moved:
        c = item.citation
        assert marked[c.start_offset : c.end_offset].strip("`") == c.label
    assert len(read_findings(marked).findings) == 2
