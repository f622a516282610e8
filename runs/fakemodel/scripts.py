"""What the scripted model answers: decided only by the request, so a resumed agent continues
exactly where it left off. Specialists really call the tools and cite what they returned."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# What each lens greps for; roles not listed use DEFAULT_PATTERN.
ROLE_PATTERNS = {
    "security": r"password|secret|token|eval\(|exec\(|subprocess|pickle|md5|sha1",
    "secrets": r"password|secret|token|key|DEBUG",
    "correctness": r"TODO|FIXME|XXX|except:|pass$|raise",
    "tests": r"def test_|assert",
    "performance": r"for .* in |while |sleep\(|\.all\(\)",
    "maintainability": r"^def |^class |^\s+def ",
}
DEFAULT_PATTERN = r"def |class |function |TODO|FIXME"
_GREP_HIT = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+):(?P<text>.*)$")
_SECTION = re.compile(r"^### Output of (.+)\n((?:(?!^### Output of ).*\n?)*)", re.M)
_CITED_LINE = re.compile(r"`[^`\s]+:\d+(?:-\d+)?`")


@dataclass(frozen=True, kw_only=True)
class ScriptedReply:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def marker(body: dict[str, Any], name: str) -> str | None:
    """A `Name: value` line from the system prompt (e.g. `Agent role: security`)."""
    for message in body.get("messages") or []:
        if message.get("role") == "system":
            match = re.search(rf"^{re.escape(name)}:\s*(\S+)", _text(message), re.M)
            if match:
                return match.group(1)
    return None


def reply_for(body: dict[str, Any]) -> ScriptedReply:
    kind = marker(body, "Step kind") or "specialist"
    if kind == "synthesizer":
        return _synthesize(_last_user_text(body))
    if kind == "validator":
        return _validate(_last_user_text(body))
    return _specialist(body)


def _specialist(body: dict[str, Any]) -> ScriptedReply:
    role = marker(body, "Agent role") or "generalist"
    rounds = sum(
        1 for m in body["messages"] if m.get("role") == "assistant" and m.get("tool_calls")
    )
    offered = {t.get("function", {}).get("name") for t in body.get("tools") or []}
    hits = _grep_hits(body)
    if rounds == 0 and "list_dir" in offered:
        return ScriptedReply(
            reasoning="Looking at the layout of the project first. ",
            tool_calls=[("list_dir", {"path": ".", "depth": 2})],
        )
    if rounds == 1 and "grep" in offered:
        pattern = ROLE_PATTERNS.get(role, DEFAULT_PATTERN)
        return ScriptedReply(
            reasoning=f"Searching for what the {role} lens cares about. ",
            tool_calls=[("grep", {"pattern": pattern, "path": ".", "max_results": 50})],
        )
    if rounds == 2 and hits and "read_file" in offered:
        path, line, _ = hits[0]
        return ScriptedReply(
            reasoning=f"Reading the code around the first match in {path}. ",
            tool_calls=[
                ("read_file", {"path": path, "start_line": max(1, line - 3), "end_line": line + 8})
            ],
        )
    return ScriptedReply(
        reasoning=f"Looking at the files that match, I can now write the {role} findings. ",
        content=_findings(role, hits),
    )


def _findings(role: str, hits: list[tuple[str, int, str]]) -> str:
    if not hits:
        return (
            f"No evidence found for this lens.\n\n- **{role} not assessed** (no evidence) — "
            "reopen trigger: code matching this lens appears in the target."
        )
    lines = [f"### {role.capitalize()} findings", ""]
    seen: set[str] = set()
    for path, line, text in hits:
        quote = text.strip()[:80].strip()
        if path in seen or len(quote) < 3 or "`" in quote:
            continue
        seen.add(path)
        lines.append(
            f"- **{role.capitalize()} concern in {path}** (codebase) `{path}:{line}` — `{quote}`"
        )
        if len(seen) == 4:
            break
    return "\n".join(lines) + "\n"


def _grep_hits(body: dict[str, Any]) -> list[tuple[str, int, str]]:
    """`path:line:text` lines from the grep results in this conversation."""
    grep_ids = {
        call.get("id")
        for m in body["messages"]
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or []
        if call.get("function", {}).get("name") == "grep"
    }
    hits = []
    for message in body["messages"]:
        if message.get("role") == "tool" and message.get("tool_call_id") in grep_ids:
            for raw in _text(message).splitlines():
                match = _GREP_HIT.match(raw)
                if match:
                    hits.append((match["path"], int(match["line"]), match["text"]))
    return hits


def _synthesize(user_text: str) -> ScriptedReply:
    findings: list[str] = []
    agents: list[str] = []
    for header, body in re.findall(
        r"^### Output of (.+)\n((?:(?!^### Output of ).*\n?)*)", user_text, re.M
    ):
        key = header.split()[0]
        if header.rstrip().endswith("(failed)"):
            agents.append(f"- Agent {key} failed; its lens is not covered.")
            continue
        agents.append(f"- {key}: reported")
        for line in body.splitlines():
            if _CITED_LINE.search(line) and line.strip() not in findings:
                findings.append(line.strip())
    parts = ["## Findings", ""]
    parts += findings or ["No cited findings were reported."]
    parts += ["", "## Agents", "", *agents]
    return ScriptedReply(
        reasoning="Merging the specialists' findings, keeping their citations. ",
        content="\n".join(parts) + "\n",
    )


def _validate(report: str) -> ScriptedReply:
    cited = [line for line in report.splitlines() if _CITED_LINE.search(line)]
    files = {m.split(":")[0].strip("`") for line in cited for m in _CITED_LINE.findall(line)}
    failed = "failed; its lens is not covered" in report
    if len(cited) >= 3 and not failed:
        level, why = "high", f"{len(cited)} findings, each with a citation"
    elif cited:
        level = "medium"
        why = f"{len(cited)} cited findings" + ("; an agent failed" if failed else "")
    else:
        level, why = "low", "no cited findings"
    summary = (
        f"Summary: The review found {len(cited)} cited findings across {len(files)} files."
        + (" One or more agents failed, so part of the picture is missing." if failed else "")
    )
    return ScriptedReply(
        reasoning="Checking each finding against the checklist. ",
        content=f"{summary}\nConfidence: {level}\nReasons: {why}.\n",
    )


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return _text(message)
    return ""


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else json.dumps(content or "")
