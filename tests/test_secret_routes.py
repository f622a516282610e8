"""Every route target bytes take applies the one secret rule: the tools, git, the kept lines,
the exports and the stored events, counted form by form over a corpus with a secret in each
form (devtools.secret_corpus)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import pytest

from devtools.secret_corpus import SETTINGS_CODE, SETTINGS_PY
from runs.engine.target.tools import ReadOnlyTools


def tool_calls(corpus: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every tool, in every form that can show a file's bytes or a file's name."""
    files = sorted(
        p.relative_to(corpus.root).as_posix()
        for p in corpus.root.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(corpus.root).parts
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("list_dir", {"path": ".", "depth": 3}),
        ("glob", {"pattern": "**"}),
        ("glob", {"pattern": "**/*"}),
        ("grep", {"pattern": ".", "max_results": 200}),
        ("grep", {"pattern": "(?i)pass|secret|token|key|://|%3a", "max_results": 200}),
        ("git_log", {"max_count": 10}),
        ("git_show", {"rev": "HEAD"}),
        ("git_show", {"rev": "HEAD~1"}),
        ("git_show", {"rev": "HEAD", "path": "."}),
        ("git_diff", {"rev_from": "HEAD~1", "rev_to": "HEAD"}),
        ("git_diff", {"rev_from": "HEAD"}),
        ("git_diff", {"rev_from": "HEAD~1"}),
    ]
    for path in files:
        calls += [
            ("read_file", {"path": path}),
            ("grep", {"pattern": ".", "path": path, "max_results": 200}),
            ("file_info", {"path": path}),
            ("git_show", {"rev": "HEAD", "path": path}),
            ("git_blame", {"path": path}),
            ("git_log", {"path": path}),
            ("git_diff", {"rev_from": "HEAD~1", "path": path}),
        ]
    return calls


def test_no_secret_in_any_form_reaches_the_model_through_any_tool(secret_corpus, capsys):
    """Names, tokens, keys, URL encodings, secret files' contents and names: 0 reach a tool's
    answer, whichever tool and form the model tries."""
    tools = ReadOnlyTools(secret_corpus.root)
    calls = tool_calls(secret_corpus)
    leaked: Counter[str] = Counter()
    examples = []
    answered = 0
    for name, args in calls:
        result = tools.call(name, args)
        answered += result.ok
        for form, hits in secret_corpus.leaks(f"{result.content}\n{result.summary}").items():
            if form == "file names" and args.get("path") not in (None, "."):
                continue  # a refusal repeats the path the model itself named
            leaked[form] += len(hits)
            examples.append((name, args, hits))
    with capsys.disabled():
        print(f"\nsecret suite, tools: {len(calls)} calls over 9 tools ({answered} answered)")
        for form, values in [
            *secret_corpus.forms.items(),
            ("file names", secret_corpus.secret_files),
        ]:
            print(f"  {form}: {len(values)} secrets, {leaked[form]} reached the model")
    assert examples == [], examples[:5]
    assert answered > len(calls) // 2, "most calls answer: the rule withholds values, not files"


def test_a_redacted_settings_file_still_reads_as_code(secret_corpus):
    """The model reads settings.py with its code unchanged and only the values replaced."""
    tools = ReadOnlyTools(secret_corpus.root)
    shown = tools.call("read_file", {"path": "settings.py"}).content.splitlines()[1:]
    original = SETTINGS_PY.splitlines()
    assert len(shown) == len(original) + 1  # the committed mail password line follows
    unchanged = [line.split("\t", 1)[1] for line in shown if line.split("\t", 1)[1] in original]
    assert unchanged == SETTINGS_CODE, "every line without a secret arrives as written"
    redacted = [line.split("\t", 1)[1] for line in shown if "[redacted]" in line]
    assert redacted == [
        'SECRET_KEY = "[redacted]"',
        'AWS_ACCESS_KEY_ID = "[redacted]"',
        'AWS_SECRET_ACCESS_KEY = "[redacted]"',
        'GITHUB_TOKEN = "[redacted]"',
        '        "PASSWORD": "[redacted]",',
        'EMAIL_HOST_PASSWORD = "[redacted]"',
    ]


def test_listings_show_a_placeholder_for_secret_files_and_keep_the_rest(secret_corpus):
    tools = ReadOnlyTools(secret_corpus.root)
    listing = tools.call("list_dir", {"path": ".", "depth": 3}).content.splitlines()
    assert "settings.py  (" in "\n".join(listing) and "config/" in listing
    assert "[secret file]  [not readable]" in listing
    assert "config/[secret file]  [not readable]" in listing
    assert ".envs/.production/[secret file]  [not readable]" in listing
    globbed = tools.call("glob", {"pattern": "**/*.yml"}).content.splitlines()
    assert "docker-compose.yml" in globbed and "config/[secret file]" in globbed
    assert "config/secret.yml" not in globbed


@pytest.mark.django_db(transaction=True)
def test_a_run_on_the_scripted_model_keeps_every_secret_out_of_events_lines_and_exports(
    scripted_model, secret_corpus, alice, client, capsys
):
    """End to end: what the model received, the stored events, the report, the kept lines and
    both exports hold 0 secrets, and the model still read settings.py's code."""
    from runs.engine.worker import Engine
    from runs.models import AgentEvent, RunStatus
    from runs.services import launch_run

    run = launch_run(flow="security-review", target=str(secret_corpus.root), owner=alice)
    asyncio.run(asyncio.wait_for(Engine(run_id=run.id).run(), 90))
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    client.force_login(alice)
    kept = run.report_data.get("checked_lines") or []
    places = {
        "model": json.dumps(scripted_model.requests, ensure_ascii=False),
        "events": json.dumps(
            list(AgentEvent.objects.filter(step__run=run).values_list("payload", flat=True)),
            ensure_ascii=False,
        ),
        "report": run.report + json.dumps(run.report_data, ensure_ascii=False),
        "kept lines": "".join(
            client.get(f"/runs/{run.id}/citations/{entry['n']}/").content.decode() for entry in kept
        ),
        "export.md": client.get(f"/runs/{run.id}/export.md").content.decode(),
        "export.json": client.get(f"/runs/{run.id}/export.json").content.decode(),
    }
    leaks = {place: secret_corpus.leaks(text) for place, text in places.items()}
    with capsys.disabled():
        print(f"\nsecret suite, one run: {len(scripted_model.requests)} model requests")
        for place, text in places.items():
            found = sum(map(len, leaks[place].values()))
            print(f"  {place}: {len(text)} chars, {found} secrets")
    assert leaks == {place: {} for place in places}
    # The run still worked on the redacted text: citations of redacted lines were verified.
    assert kept and any("[redacted]" in line for entry in kept for line in entry["lines"])
    tool_texts = [
        str(message.get("content"))
        for body in scripted_model.requests
        for message in body.get("messages", [])
        if message.get("role") == "tool"
    ]
    lines = [line for text in tool_texts for line in text.splitlines()]
    assert "settings.py:7:DEBUG = False" in lines
    assert (
        "src/main/resources/application.properties:3:spring.datasource.password=[redacted]" in lines
    )


def test_a_folder_named_like_a_secret_file_keeps_its_name_and_its_code(tmp_path):
    """`credentials/` holding a Django app is code: listed by name, its files readable."""
    root = tmp_path / "app"
    (root / "credentials").mkdir(parents=True)
    (root / "credentials" / "models.py").write_text("class Credential:\n    pass\n")
    (root / "credentials" / "credentials").write_text("key=folder-secret-1\n")
    tools = ReadOnlyTools(root)
    listing = tools.call("list_dir", {"path": ".", "depth": 2}).content.splitlines()
    assert "credentials/" in listing
    assert "credentials/models.py  (27 bytes)" in listing
    assert "credentials/[secret file]  [not readable]" in listing
    assert tools.call("read_file", {"path": "credentials/models.py"}).ok
    globbed = tools.call("glob", {"pattern": "**"}).content
    assert "folder-secret-1" not in globbed and "credentials/credentials" not in globbed
