"""Every route target bytes take applies the one secret rule: the tools, git, the kept lines,
the exports and the stored events, counted form by form over a corpus with a secret in each
form (devtools.secret_corpus)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

import pytest

from devtools.secret_corpus import (
    CREDENTIAL_NAMES,
    EMBEDDED_KEY_SECRETS,
    EMBEDDED_KEYS,
    SETTINGS_CODE,
    SETTINGS_PY,
)
from runs.engine.report.reporting import ConfinedLines
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


def code_lines(text: str) -> dict[int, str]:
    """The lines of a file that hold no key material, by number."""
    return {
        number: line
        for number, line in enumerate(text.splitlines(), start=1)
        if not any(piece in line for piece in ("PRIVATE KEY", "PrivateKey", '"d"', "tls.key"))
        and not any(secret in line for secret in EMBEDDED_KEY_SECRETS)
        and re.fullmatch(r'[\s+"]*[A-Za-z0-9+/=_\\-]{16,}(\\n)?["\s+,;]*', line) is None
    }


@pytest.mark.parametrize("path", sorted(EMBEDDED_KEYS))
def test_an_ordinary_file_with_a_key_reads_with_only_the_key_redacted(secret_corpus, path):
    """read_file, grep, git show, git blame and the citation reader all give the file with its
    line count, every line of code around the key verbatim, and none of the key."""
    tools = ReadOnlyTools(secret_corpus.root)
    original = EMBEDDED_KEYS[path]
    total = len(original.splitlines())
    kept = code_lines(original)
    read = tools.call("read_file", {"path": path})
    assert read.ok, read.content
    shown = dict(line.lstrip().split("\t", 1) for line in read.content.splitlines()[1:])
    assert len(shown) == total
    assert all(shown[str(number)] == line for number, line in kept.items())
    blamed = tools.call("git_blame", {"path": path}).content
    committed = tools.call("git_show", {"rev": "HEAD", "path": path}).content
    grepped = tools.call("grep", {"pattern": ".", "path": path, "max_results": 200}).content
    cited = ConfinedLines(str(secret_corpus.root))(path)
    assert isinstance(cited, list) and len(cited) == total
    assert all(cited[number - 1] == line for number, line in kept.items())
    for answer in (read.content, blamed, committed, grepped, "\n".join(cited)):
        assert not [secret for secret in EMBEDDED_KEY_SECRETS if secret in answer]
        assert "[private key redacted]" in answer or "[redacted]" in answer
    assert all(line in committed and line in blamed for line in kept.values() if line.strip())
    for number, line in kept.items():
        if line.strip():
            assert f"{path}:{number}:{line.strip()}" in grepped


@pytest.mark.parametrize("middle", [3, 6])
def test_a_line_range_inside_a_key_shows_no_part_of_it(secret_corpus, middle):
    tools = ReadOnlyTools(secret_corpus.root)
    for path in ("app/tls_client.py", "src/main/java/shop/Signer.java"):
        part = tools.call("read_file", {"path": path, "start_line": middle, "end_line": middle + 1})
        blamed = tools.call("git_blame", {"path": path, "start_line": middle})
        for answer in (part.content, blamed.content):
            assert not [secret for secret in EMBEDDED_KEY_SECRETS if secret in answer]


def test_a_file_named_with_a_credential_shows_it_redacted_wherever_its_name_appears(
    secret_corpus,
):
    tools = ReadOnlyTools(secret_corpus.root)
    answers = [
        tools.call("list_dir", {"path": ".", "depth": 3}).content,
        tools.call("glob", {"pattern": "**/*"}).content,
        tools.call("grep", {"pattern": "total", "max_results": 200}).content,
        tools.call("git_show", {"rev": "HEAD~1"}).content,
        tools.call("git_show", {"rev": "HEAD", "path": "backups"}).content,
        tools.call("git_show", {"rev": "HEAD~1", "path": "mirror"}).content,
        tools.call("glob", {"pattern": "**/*Dump*"}).content,  # no probing the value
    ]
    for answer in answers:
        assert not [value for value in CREDENTIAL_NAMES.values() if value in answer], answer
    listing, globbed, grepped, shown = answers[:4]
    for folder in ("backups/postgres_shop_password=[redacted].sql", "exports/api_key:[redacted].csv",
                   "tmp/deploy_token=[redacted]", "mirror/[redacted]@files.example.com.txt"):  # fmt: skip
        assert f"{folder}  (" in listing and folder in globbed.splitlines()
        assert f"{folder}:1:id,total" in grepped and folder in shown
    assert answers[-1] == "(no matches)"
    read = tools.call("read_file", {"path": "backups/postgres_shop_password=DumpTxLNOUkKjx.sql"})
    assert read.ok and read.content.startswith("backups/postgres_shop_password=[redacted].sql")


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
