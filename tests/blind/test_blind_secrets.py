"""Blind secret corpus: no planted secret reaches the model through any read-only tool.

The target (data/secrets/target) holds fake secrets in the forms users reported and more:
tokens in source, passwords in config formats, connection strings in several encodings,
private keys of many formats, secret files by name and file names that carry a credential.
It is committed twice (a rotation), so history is read too. Ordinary code around a secret must
still reach the model: the rule redacts values, not files.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

SWEEP_PATTERNS = [
    ".",
    "(?i)password",
    "(?i)passwd|pwd",
    "(?i)secret",
    "(?i)token",
    "(?i)key",
    "PRIVATE KEY",
    "AKIA",
    "://",
    "[A-Za-z0-9+/=_-]{20,}",
]
GLOBS = ["**", "**/*", "**/.*", "*", ".*", "**/.*/**", "**/*.sql", "**/*.txt"]


def prefix(value: str) -> str | None:
    """The value's leading letters and digits, as a literal pattern a model might grep for."""
    match = re.match(r"[A-Za-z0-9_]{4,10}", value)
    return match.group(0) if match else None


def commits(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "rev-list", "--reverse", "HEAD"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def sweep(tools: Any, root: Path, secrets: list[dict[str, str]]) -> list[tuple[str, Any]]:
    """Every call a curious model could make to surface a secret, with its result."""
    first, head = commits(root)[0], "HEAD"
    inside = [path for path in root.rglob("*") if ".git" not in path.relative_to(root).parts]
    files = sorted(str(path.relative_to(root)) for path in inside if path.is_file())
    folders = [".", *sorted(str(path.relative_to(root)) for path in inside if path.is_dir())]
    calls: list[tuple[str, dict[str, Any]]] = []
    calls += [("list_dir", {"path": folder, "depth": 3}) for folder in folders]
    calls += [("glob", {"pattern": pattern}) for pattern in GLOBS]
    patterns = SWEEP_PATTERNS + sorted({p for s in secrets if (p := prefix(s["value"]))})
    calls += [("grep", {"pattern": pattern, "max_results": 200}) for pattern in patterns]
    calls += [
        ("git_log", {"max_count": 100}),
        ("git_show", {"rev": head}),
        ("git_show", {"rev": first}),
        ("git_show", {"rev": "HEAD~1"}),
        ("git_diff", {"rev_from": first, "rev_to": head}),
        ("git_diff", {"rev_from": "HEAD~1"}),
    ]
    for name in files:
        calls += [
            ("read_file", {"path": name}),
            ("file_info", {"path": name}),
            ("grep", {"pattern": ".", "path": name, "max_results": 200}),
            ("git_log", {"path": name, "max_count": 100}),
            ("git_show", {"rev": head, "path": name}),
            ("git_show", {"rev": first, "path": name}),
            ("git_diff", {"rev_from": first, "rev_to": head, "path": name}),
            ("git_blame", {"path": name}),
        ]
    return [(f"{name}({args})", tools.call(name, args)) for name, args in calls]


def test_the_secret_key_is_planted_where_it_says(secret_repo, secret_key):
    """A harness check: every secret and every visible line is in the target or its history."""
    text = "".join(
        path.read_text(errors="replace") + path.name
        for path in secret_repo.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(secret_repo).parts
    )
    history = {change["old"] for change in secret_key["history"]}
    decoded_only = {s["value"] for s in secret_key["secret"] if "(decoded)" in s["form"]}
    for secret in secret_key["secret"]:
        if secret["value"] not in history | decoded_only:
            assert secret["value"] in text, secret
    for line in secret_key["visible"]:
        assert line["line"] in (secret_repo / line["path"]).read_text(), line
    assert len(commits(secret_repo)) == 2
    assert len(secret_key["secret"]) >= 60


@pytest.mark.timeout(900)  # about 560 tool calls, a fifth of them reading git history
def test_no_planted_secret_reaches_the_model_and_the_code_around_them_does(secret_repo, secret_key):
    """Every tool over every file, folder and pattern: 0 secrets leaked, 0 code lines missing."""
    from runs.engine.target.tools import ReadOnlyTools

    tools = ReadOnlyTools(secret_repo)
    offered = {spec["function"]["name"] for spec in tools.specs()}
    assert {"read_file", "grep", "glob", "list_dir", "file_info"} <= offered
    assert {"git_log", "git_show", "git_diff", "git_blame"} <= offered, offered
    results = sweep(tools, secret_repo, secret_key["secret"])
    refused = Counter(call.split("(")[0] for call, result in results if not result.ok)

    tried: Counter[str] = Counter()
    leaked: Counter[str] = Counter()
    where: dict[str, list[str]] = defaultdict(list)
    for secret in secret_key["secret"]:
        tried[secret["form"]] += 1
        hits = [call for call, result in results if secret["value"] in result.content]
        if hits:
            leaked[secret["form"]] += 1
            where[secret["form"]].append(
                f"{secret['value'][:12]}... via {len(hits)} calls, e.g. {hits[0]}"
            )

    reads = {}
    missing: Counter[str] = Counter()
    wanted: Counter[str] = Counter()
    for line in secret_key["visible"]:
        wanted[line["path"]] += 1
        if line["path"] not in reads:
            reads[line["path"]] = tools.call("read_file", {"path": line["path"]}).content
        if line["line"] not in reads[line["path"]]:
            missing[line["path"]] += 1

    lines = [
        f"tool calls: {len(results)} (not ok, by tool: {dict(refused)})",
        f"secrets tried: {sum(tried.values())}, leaked: {sum(leaked.values())}",
    ]
    for form in sorted(tried):
        lines.append(f"  {form}: {leaked[form]} of {tried[form]} leaked")
        lines += [f"    {example}" for example in where[form]]
    lines.append(
        f"code lines that must stay visible: {sum(wanted.values())}, missing: {sum(missing.values())}"
    )
    lines += [f"  {path}: {missing[path]} of {wanted[path]} missing" for path in sorted(missing)]
    report = "\n".join(lines)
    print("\n" + report)
    assert sum(leaked.values()) == 0, report
    assert sum(missing.values()) == 0, report
