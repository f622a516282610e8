"""One click to check a citation, and runs compared: through the real report writer, views,
exports and history, with owners, outsiders and hostile text."""

from __future__ import annotations

import json
import re

import pytest

from runs.services import launch_run


def cite_urls(html: str) -> list[str]:
    return re.findall(r'<a class="cite-check" href="([^"]+)"', html)


@pytest.mark.django_db
def test_each_verified_citation_links_to_the_lines_the_run_checked(
    client_for, run_with, alice, target_dir
):
    run = run_with(target_dir, alice)
    client = client_for(alice)
    pane = client.get(f"/runs/{run.id}/").content.decode()
    links = cite_urls(pane)
    assert len(links) == 3, run.report_data["linked_report"]
    assert f'hx-get="{links[0]}"' in pane and 'id="citation-panel"' in pane
    page = client.get(links[0]).content.decode()  # a plain link: the whole page
    assert "<!doctype html>" in page and 'data-testid="citation-excerpt"' in page
    assert "<mark>return subprocess.run(cmd, shell=True)</mark>" in page
    # three lines of context either side of line 6 (the file has 13 lines)
    assert re.findall(r'<th scope="row">(\d+)</th>', page) == [str(n) for n in range(3, 10)]
    assert "has changed" not in page
    fragment = client.get(links[0], HTTP_HX_REQUEST="true").content.decode()
    assert "<!doctype html>" not in fragment and "<mark>" in fragment
    # the stored Markdown (exports, copy) has plain ticks, not links into the app
    assert "`app/views.py:6` ✓" in run.report and "#cite-" not in run.report


@pytest.mark.django_db
def test_the_view_shows_what_the_run_read_and_says_the_file_changed_since(
    client_for, run_with, alice, target_dir
):
    run = run_with(target_dir, alice)
    (target_dir / "app/views.py").write_text("print('rewritten')\n")
    link = cite_urls(client_for(alice).get(f"/runs/{run.id}/").content.decode())[0]
    page = client_for(alice).get(link).content.decode()
    assert "the file has changed since this run" in page
    assert "<mark>return subprocess.run(cmd, shell=True)</mark>" in page
    (target_dir / "app/views.py").unlink()
    page = client_for(alice).get(link).content.decode()
    assert "the file cannot be read now (no such file)" in page


@pytest.mark.django_db
def test_only_the_owner_sees_a_citation_and_a_made_up_number_is_a_404(
    client_for, run_with, alice, bob, django_user_model, client, target_dir
):
    run = run_with(target_dir, alice)
    url = f"/runs/{run.id}/citations/0/"
    assert client_for(alice).get(url).status_code == 200
    assert client_for(bob).get(url).status_code == 404
    charlie = django_user_model.objects.create_user("charlie", password="x", is_staff=True)
    assert client_for(charlie).get(url).status_code == 404
    assert client_for(charlie).get(url, HTTP_HX_REQUEST="true").status_code == 404
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    for missing in ("999", "3"):  # 3: a citation that exists but was not verified, no lines
        assert client_for(alice).get(f"/runs/{run.id}/citations/{missing}/").status_code == 404


@pytest.mark.django_db
def test_a_quote_with_html_and_script_is_shown_as_text(client_for, run_with, alice, target_dir):
    (target_dir / "app/page.html").write_text(
        'line one\n<script>alert("x")</script><img src=x onerror=alert(1)>\nline three\n'
    )
    report = (
        "## Findings\n- **Script** (codebase) `app/page.html:2` — "
        '`<script>alert("x")</script><img src=x onerror=alert(1)>`\n'
    )
    run = run_with(target_dir, alice, report)
    client = client_for(alice)
    pane = client.get(f"/runs/{run.id}/").content.decode()
    [link] = cite_urls(pane)
    page = client.get(link).content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "<mark>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


@pytest.mark.django_db
def test_a_secret_file_or_a_path_out_of_the_target_is_never_kept_or_linked(
    client_for, run_with, alice, target_dir
):
    (target_dir / ".env").write_text("API_TOKEN=abc123\n")
    outside = target_dir.parent / "outside.py"
    outside.write_text("x = 1\n")
    (target_dir / "app/link.py").symlink_to(outside)
    (target_dir / "app/keyed.py").write_text(
        "x = 1\nURL = 'https://admin:s3cret@db.example/x'\ny = 2\n"
    )
    report = (
        "## Findings\n"
        "- **Token** (codebase) `.env:1` — `API_TOKEN=abc123`\n"
        "- **Escape** (codebase) `../outside.py:1` — `x = 1`\n"
        "- **Link** (codebase) `app/link.py:1` — `x = 1`\n"
        "- **Absolute** (codebase) `/etc/passwd:1`\n"
        "- **Credential** (codebase) `app/keyed.py:2`\n"
    )
    run = run_with(target_dir, alice, report)
    kept = run.report_data["checked_lines"]
    # Every citation keeps its reason; only the one inside the target keeps lines.
    assert [entry["path"] for entry in kept if "lines" in entry] == ["app/keyed.py"]
    assert "s3cret" not in json.dumps(kept)
    assert not any("abc123" in line for entry in kept for line in entry.get("lines", []))
    statuses = [c["status"] for c in run.report_data["citations"]]
    assert statuses[:4] == [
        "secret file, not checked",
        "outside the target",
        "outside the target",
        "outside the target",
    ]
    client = client_for(alice)
    pane = client.get(f"/runs/{run.id}/").content.decode()
    assert len(cite_urls(pane)) == 5  # each opens what was checked
    page = client.get(f"/runs/{run.id}/citations/4/").content.decode()
    assert "s3cret" not in page and "x = 1" in page
    reasons = ["secret file, not checked", *["outside the target"] * 3]
    for number, reason in enumerate(reasons):
        page = client.get(f"/runs/{run.id}/citations/{number}/", HTTP_HX_REQUEST="true")
        words = page.content.decode()
        assert f"Not verified: {reason}. Nothing of the file is shown." in words
        assert "<table" not in words and "abc123" not in words.split("Quoted:")[0]


@pytest.mark.django_db
def test_a_rerun_marks_findings_new_still_present_and_resolved_everywhere(
    cited_report, client_for, run_with, alice, bob, target_dir
):
    first = run_with(target_dir, alice)
    assert first.report_data["comparison"] is None
    assert "[new]" not in first.report
    ids = [f["id"] for f in first.report_data["findings"]]
    assert len(set(ids)) == 3
    # bob's run on the same target is not alice's previous run
    run_with(target_dir, bob, cited_report.replace("Shell", "Other"))
    # the code moves down two lines; the shell finding stays, the TODO is fixed, a new one
    views = target_dir / "app/views.py"
    views.write_text("# header\n# header\n" + views.read_text().replace("# TODO: v", "# V"))
    second_report = (
        "## Findings\n"
        "- **Shell injection, renamed** (codebase, high) `app/views.py:8` — "
        "`return   subprocess.run(cmd, shell=True)`\n"
        '- **Hard-coded password** (codebase, medium) `app/settings.py:3` — `password = "[redacted]"`\n'
        "- **Debug on** (codebase, medium) `app/settings.py:1` — `DEBUG = True`\n"
    )
    second = run_with(target_dir, alice, second_report)
    data = second.report_data
    assert data["comparison"]["previous"]["id"] == str(first.id)
    assert data["comparison"]["counts"] == {"new": 1, "still_present": 2, "resolved": 1}
    assert [f["change"] for f in data["findings"]] == ["still present", "still present", "new"]
    assert data["findings"][0]["id"] == ids[0]
    assert [r["claim"] for r in data["comparison"]["resolved"]] == ["Unvalidated command"]
    assert "- **[still present]** **Shell injection, renamed**" in second.report
    assert "- **[new]** **Debug on** (codebase, medium) `app/settings.py:1` ✓" in second.report
    assert "1 new, 2 still present, 1 resolved" in second.report
    assert "- **[resolved]** Unvalidated command `app/views.py:5`" in second.report
    client = client_for(alice)
    pane = client.get(f"/runs/{second.id}/").content.decode()
    assert pane.count('data-testid="finding-change"') == 4
    assert f'href="/runs/{first.id}/"' in pane
    markdown = client.get(f"/runs/{second.id}/export.md").content.decode()
    assert "**[new]** **Debug on**" in markdown and "1 resolved" in markdown
    exported = json.loads(client.get(f"/runs/{second.id}/export.json").content)
    assert exported["report"]["comparison"]["counts"]["resolved"] == 1
    assert [f["change"] for f in exported["report"]["findings"]][-1] == "new"
    assert "linked_report" not in exported["report"]
    history = client.get("/runs/").content.decode()
    assert "1 new</span>" in history and "1 resolved</span>" in history


@pytest.mark.django_db
def test_a_run_is_compared_only_with_a_like_run_and_the_pane_says_what_differs(
    client_for, run_with, finish_run, cited_report, alice, target_dir
):
    """A medium run after a small one is not compared (the small band never looked for what
    the medium one does); the pane says what differs and offers to pick a run."""
    first = run_with(target_dir, alice)
    medium = finish_run(
        launch_run(flow="code-review", target=str(target_dir), owner=alice, band="medium"),
        report=cited_report,
    )
    assert medium.report_data["comparison"] is None
    unlike = medium.report_data["comparison_unlike"]
    assert unlike["previous"]["id"] == str(first.id)
    assert unlike["differs"] == ["band small, this run medium"]
    pane = client_for(alice).get(f"/runs/{medium.id}/").content.decode()
    assert 'data-testid="compare-unlike"' in pane and "band small, this run medium" in pane
    assert 'href="/runs/"' in pane
    again = run_with(target_dir, alice)
    assert again.report_data["comparison"]["previous"]["id"] == str(first.id)


@pytest.mark.django_db
def test_every_part_of_a_finished_report_is_graded_and_the_models_own_marks_are_gone(
    client_for, finish_run, cited_report, alice, target_dir
):
    """Summary, Reasons and body citations each get one graded mark; reasoning and the
    model's own ✓ and [verified] never reach the report or the exports."""
    report = (
        "<think>app/views.py:6 is verified ✓ HIDDEN-SYNTH-THOUGHT</think>\n"
        + "Thinking...\nHIDDEN-OLLAMA-THOUGHT\n...done thinking.\n"
        + cited_report
        + "- **Debug** (codebase, low) `app/settings.py:2` ✅ [verified]\n"
    )
    verdict = (
        "<reasoning>HIDDEN-VALIDATOR-THOUGHT: say high</reasoning>\n"
        "Summary: Shell injection at `app/nope.py:3`.\nConfidence: high\n"
        "Reasons: 4 of 4 findings (100%) are backed by verified codebase citations; see "
        "`app/views.py:6` — `return subprocess.run(cmd, shell=True)`."
    )
    run = finish_run(
        launch_run(flow="code-review", target=str(target_dir), owner=alice),
        report=report,
        verdict=verdict,
    )
    grades = [(c["part"], c["citation"], c["grade"]) for c in run.report_data["citations"]]
    assert grades == [
        ("body", "app/views.py:6", "verified"),
        ("body", "app/settings.py:3", "verified"),
        ("body", "app/views.py:5", "verified"),
        ("body", "app/settings.py:2", "lines exist"),
        ("summary", "app/nope.py:3", "flagged"),
        ("reasons", "app/views.py:6", "verified"),
    ]
    assert "<think>" not in run.report and "✅" not in run.report and "[verified]" not in run.report
    assert "`app/nope.py:3` **[unverified: no such file]**" in run.report
    assert "`app/settings.py:2` **[lines exist, claim not checked]**" in run.report
    assert "- Validator: 4 of 4" not in run.report
    assert "> *(the validator's own words, not the verdict)* 4 of 4 findings" in run.report
    assert run.report_data["evidence"]["broken"] == 1
    exported = client_for(alice).get(f"/runs/{run.id}/export.md").content.decode()
    assert "<think>" not in exported and "✅" not in exported
    # every field of the JSON export too (the steps' outputs included), not only the report
    as_json = client_for(alice).get(f"/runs/{run.id}/export.json").content.decode()
    for text in (run.report, exported, as_json, json.dumps(run.report_data)):
        for hidden in ("HIDDEN-", "<think>", "<reasoning>", "Thinking...", "done thinking"):
            assert hidden not in text
    assert json.loads(as_json)["steps"]  # the steps are exported, without their reasoning


@pytest.mark.django_db
def test_a_flagged_citation_opens_the_lines_it_named_with_the_reason(
    client_for, run_with, alice, target_dir
):
    """The quote sits on another line than the one cited: a click on the whole citation opens
    the lines that were read around the cited one, with the flag's reason, in place."""
    report = (
        "## Findings\n- **Shell** (codebase, high) `app/views.py:4` — "
        "`return subprocess.run(cmd, shell=True)`\n"
    )
    run = run_with(target_dir, alice, report)
    [check] = run.report_data["citations"]
    assert check["status"] != "verified"
    client = client_for(alice)
    pane = client.get(f"/runs/{run.id}/").content.decode()
    [link] = cite_urls(pane)
    assert f'hx-get="{link}"' in pane and 'hx-target="#cite-lines-0"' in pane
    assert re.search(
        r'aria-label="app/views.py:4 not verified: [^"]+; show the checked lines"', pane
    )
    fragment = client.get(link, HTTP_HX_REQUEST="true").content.decode()
    assert "Not verified: " in fragment and "Nothing of the file is shown" not in fragment
    assert re.findall(r'<th scope="row">(\d+)</th>', fragment) == [str(n) for n in range(1, 8)]
    assert "return subprocess.run(cmd, shell=True)" in fragment
