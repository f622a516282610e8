"""What the scripted model answers, decided only by the request messages, so a resumed agent
continues exactly where it left off. Specialists really call the tools and cite what those
returned; the synthesizer merges cited findings; the validator grades the report.

The orchestrator's prompts carry the markers read here: `Step kind: …` and `Agent role: …` in
the agent's part (the first user message; older transcripts had it in the system message),
`Focus: …` and `### Output of <key> (<role>)` headings in the user message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from runs.demo.webscript import web_specialist

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
MAX_FINDINGS = 4
UPSTREAM_HEADING = "### Output of "

# A finding's title and why-it-matters, by what the cited line contains (first match wins).
TITLES: tuple[tuple[str, str, str], ...] = (
    (r"eval\(|exec\(", "Dynamic code execution", "evaluating strings runs whatever reaches them"),
    (r"subprocess|os\.system|shell=True", "Shell command execution", "input may reach a shell"),
    (r"pickle", "Unsafe deserialisation", "unpickling untrusted data runs code"),
    (r"md5|sha1", "Weak hash", "these hashes are broken for security uses"),
    (r"(?i)password|secret|token|api_?key", "Hard-coded credential", "anyone with the code has it"),
    (r"TODO|FIXME|XXX", "Unfinished work", "the author marked this as not done"),
    (r"except:", "Bare except", "it swallows every error, including bugs"),
    (r"\braise\b", "Error path", "callers must handle this failure"),
    (r"def test_|assert", "Test coverage point", "this is what the tests actually check"),
    (r"sleep\(", "Blocking sleep", "it stalls the caller"),
    (r"\.all\(\)", "Unbounded query", "it loads every row"),
    (r"for .* in |while ", "Loop over data", "its cost grows with the input"),
    (r"^\s*(def|class) ", "Definition to review", "it is part of the surface under review"),
)

_GREP_HIT = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+):(?P<text>.*)$")
_CITATION = re.compile(r"`[^`\s]+:\d+(?:-\d+)?`")
_CITED = re.compile(r"`(?P<cite>[^`\s]+:\d+(?:-\d+)?)`[^`\n]{0,12}(?:`(?P<quote>[^`\n]+)`)?")
_FAILED_AGENT = re.compile(r"Agent (\S+) failed; its lens is not covered")

Hit = tuple[str, int, str]  # path, line number, the line's text


@dataclass(frozen=True, kw_only=True)
class ScriptedReply:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def reply_for(body: dict[str, Any]) -> ScriptedReply:
    """The deterministic answer to one chat request."""
    kind = marker(body, "Step kind") or "specialist"
    if kind == "synthesizer":
        document = _draft_document(body)
        if document is not None:
            return _draft(_last_user_text(body), *document)
        return _synthesize(_last_user_text(body))
    if kind == "validator":
        return _validate(_last_user_text(body))
    return _specialist(body)


def exploring_reply(body: dict[str, Any], explore: int) -> ScriptedReply:
    """The scripted answer, or, for a specialist that has read fewer than `explore` more files
    than its script does, one more whole file among its search's matches: a stand-in for a
    real model that keeps reading until the mode's caps stop it (what fast mode is for; the
    demo's --explore and ORCHESTRATOR_DEMO_EXPLORE, the prefill bench's --explore)."""
    reply = reply_for(body)
    offered = offered_tools(body)  # none on a turn that must answer (tool_choice "none")
    if not explore or reply.tool_calls or "read_file" not in offered:
        return reply
    messages = body.get("messages") or []
    rounds = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    hits = _grep_hits(messages)  # the scripted model's own reading of its grep results
    paths = list(dict.fromkeys(path for path, _, _ in hits))
    extra = rounds - 3  # the script's own three rounds: list_dir, grep, read_file
    if marker(body, "Step kind") != "specialist" or not paths or not 0 <= extra < explore:
        return reply
    # Once every matching file was read whole, read them again from further down: each call
    # differs, or the engine's loop guard (REPEAT_LIMIT) would end the exploring before the caps.
    again, which = divmod(extra, len(paths))
    args: dict[str, Any] = {"path": paths[which]}
    if again:
        args["start_line"] = 1 + 10 * again
    return ScriptedReply(
        reasoning="Reading one more matching file before I answer. ",
        tool_calls=[("read_file", args)],
    )


def marker(body: dict[str, Any], name: str) -> str | None:
    """A `Name: value` line of the agent's instructions (e.g. `Agent role: security`): from
    the system message, else from the first user message (where the agent's part is)."""
    for message in _instructions(body):
        match = re.search(rf"^{re.escape(name)}:[ \t]*(\S+)", _text(message), re.M)
        if match:
            return match.group(1)
    return None


def _instructions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The system messages and the first user message: what carries an agent's part."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    system = [m for m in messages if m.get("role") == "system"]
    first_user = next((m for m in messages if m.get("role") == "user"), None)
    return system + ([first_user] if first_user is not None else [])


def offered_tools(body: dict[str, Any]) -> set[str]:
    """The tools the request lets the model call: none with tool_choice "none" (the engine
    then sends the tools only so the prompt keeps its cached prefix, and asks for an answer)."""
    if body.get("tool_choice") == "none":
        return set()
    names = ((t.get("function") or {}).get("name") for t in body.get("tools") or [])
    return {name for name in names if isinstance(name, str)}


# --- specialist ------------------------------------------------------------------------------


def _specialist(body: dict[str, Any]) -> ScriptedReply:
    """list_dir -> grep -> read_file -> findings; a round whose tool failed still counts."""
    role = marker(body, "Agent role") or "generalist"
    messages = body.get("messages") or []
    rounds = sum(1 for m in messages if m.get("role") == "assistant" and m.get("tool_calls"))
    offered = offered_tools(body)
    if "web_search" in offered:  # a web role of a run that allows the web
        first_user = next((_text(m) for m in messages if m.get("role") == "user"), "")
        return ScriptedReply(**web_specialist(body, role, _focus(first_user)))
    pattern = ROLE_PATTERNS.get(role, DEFAULT_PATTERN)
    hits = _grep_hits(messages)
    if rounds == 0 and "list_dir" in offered:
        return ScriptedReply(
            reasoning="Looking at the layout of the project first. ",
            tool_calls=[("list_dir", {"path": ".", "depth": 2})],
        )
    if rounds == 1 and "grep" in offered:
        args = {"pattern": pattern, "path": ".", "glob": None, "max_results": 50}
        return ScriptedReply(
            reasoning=f"Searching for what the {role} lens cares about. ",
            tool_calls=[("grep", args)],
        )
    if rounds == 2 and hits and "read_file" in offered:
        path, line, _ = hits[0]
        args = {"path": path, "start_line": max(1, line - 3), "end_line": line + 8}
        return ScriptedReply(
            reasoning=f"Reading the code around the first match in {path}. ",
            tool_calls=[("read_file", args)],
        )
    return ScriptedReply(
        reasoning=f"Looking at the files that match {pattern}, I can write the {role} findings. ",
        content=_findings(role, hits),
    )


def _findings(role: str, hits: list[Hit]) -> str:
    picked = _pick(hits)
    if not picked:
        return (
            "No evidence found for this lens.\n\n"
            f"- **{role} not assessed** (no evidence) — reopen trigger: code matching this "
            "lens appears in the target.\n"
        )
    lines = [f"### {role.capitalize()} findings", ""]
    for path, line, text in picked:
        title, why = _title(role, text)
        lines.append(f"- **{title}** (codebase) `{path}:{line}` — `{_quote(text)}`: {why}.")
    return "\n".join(lines) + "\n"


def _pick(hits: list[Hit]) -> list[Hit]:
    """Up to MAX_FINDINGS quotable hits, one per file first so the findings spread out."""
    usable = [hit for hit in dict.fromkeys(hits) if len(_quote(hit[2])) >= 3]
    seen: set[str] = set()
    first_per_file = []
    for hit in usable:
        if hit[0] not in seen:
            seen.add(hit[0])
            first_per_file.append(hit)
    rest = [hit for hit in usable if hit not in first_per_file]
    return (first_per_file + rest)[:MAX_FINDINGS]


def _quote(text: str) -> str:
    """The cited line's own text, short and safe inside backticks (citations are checked)."""
    quote = text.strip()[:80].strip()
    return "" if "`" in quote else quote


def _title(role: str, text: str) -> tuple[str, str]:
    for pattern, title, why in TITLES:
        if re.search(pattern, text):
            return title, why
    return f"{role.capitalize()} concern", f"it matched the {role} lens"


def _grep_hits(messages: list[dict[str, Any]]) -> list[Hit]:
    """`path:line:text` lines from this conversation's grep results, in order."""
    grep_ids = {
        call.get("id")
        for m in messages
        if m.get("role") == "assistant"
        for call in m.get("tool_calls") or []
        if (call.get("function") or {}).get("name") == "grep"
    }
    hits = []
    for message in messages:
        if message.get("role") == "tool" and message.get("tool_call_id") in grep_ids:
            for raw in _text(message).splitlines():
                match = _GREP_HIT.match(raw)
                if match:
                    hits.append((match["path"], int(match["line"]), match["text"]))
    return hits


# --- synthesizer and validator ---------------------------------------------------------------


def _synthesize(user_text: str) -> ScriptedReply:
    findings, agents = _merge(user_text)
    parts = ["## Findings", ""]
    parts += findings or ["No cited findings were reported."]
    parts += ["", "## Agents", "", *(agents or ["No upstream agents."])]
    return ScriptedReply(
        reasoning="Merging the specialists' findings, keeping their citations. ",
        content="\n".join(parts) + "\n",
    )


def _merge(user_text: str) -> tuple[list[str], list[str]]:
    """Each cited finding once (the first line citing it), and the upstream agents' lines."""
    findings: dict[tuple[str, str], str] = {}  # (citation, quote) -> the first line citing it
    agents: list[str] = []
    for head, body in _sections(user_text):
        key = head.split()[0]
        if head.endswith("(failed)"):
            agents.append(f"- Agent {key} failed; its lens is not covered.")
            continue
        agents.append(f"- {key}")
        for line in body:
            cited = _CITED.search(line)
            if cited:
                findings.setdefault((cited["cite"], cited["quote"] or ""), _as_item(line))
            elif "(web" in line and line.lstrip().startswith("- **"):
                findings.setdefault((line.strip(), "web"), _as_item(line))
    return list(findings.values()), agents


# --- drafts ----------------------------------------------------------------------------------

# "Write the draft feature specification (## Problem, ## Behaviour, ...)" in a draft flow's
# synthesizer prompt names the document and its sections.
_DRAFT_PROMPT = re.compile(r"Write the draft (?P<name>[^(.]+?) \((?P<sections>##[^)]*)\)")
_SCRIPTED_FINDING = re.compile(
    r"^- \*\*(?P<title>[^*]+)\*\* \((?P<trust>[^)]*)\) `(?P<cite>[^`]+)`(?P<rest>.*)$"
)
MAX_PROPOSED = 3  # evidence beyond this goes to the Cut list: a draft proposes little
ALWAYS_CUT = (
    (
        "A configuration switch for this change",
        "no user asked for one and nothing depends on it",
        "a second deployment needs different behaviour",
    ),
    (
        "A cache in front of it",
        "no measured signal says this path is slow",
        "a profile showing this path above 10% of request time",
    ),
)


def _draft_document(body: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(document name, its sections) when the synthesizer is asked for a draft, else None."""
    for message in _instructions(body):
        match = _DRAFT_PROMPT.search(_text(message))
        if match:
            sections = re.findall(r"## ([^,)]+)", match["sections"])
            return match["name"].strip(), [s.strip() for s in sections]
    return None


def _draft(user_text: str, name: str, sections: list[str]) -> ScriptedReply:
    """A draft document: cited proposals by section, a Cut list and open questions."""
    findings, agents = _merge(user_text)
    proposed, deferred = findings[:MAX_PROPOSED], findings[MAX_PROPOSED:]
    parts = [
        f"**Draft {name}**",
        "",
        "_A draft for review. Every proposed part cites its evidence; what has none waits in "
        "the Cut list with the observation that would reopen it._",
        "",
    ]
    focus = _focus(user_text)
    if focus:
        parts += [f"Focus: {focus}", ""]
    own = [s for s in sections if "open question" not in s.lower()] or ["Proposal"]
    for index, section in enumerate(own):
        parts += [f"## {section}", ""]
        items = [_proposal(line) for line in proposed[index :: len(own)]]
        parts += items or ["_Nothing in the code bears on this part yet; see Open questions._"]
        parts.append("")
    parts += ["## Cut list (YAGNI)", ""]
    parts += [_cut(line) for line in deferred]
    parts += [
        f"- **{title}**: cut, {why}. Reopen trigger: {when}." for title, why, when in ALWAYS_CUT
    ]
    parts += [
        "",
        "## Open questions",
        "",
        "- Which proposed part does the first user need first? Reopen trigger: a user asks "
        "for one of them by name.",
        "",
        "## Agents",
        "",
        *(agents or ["No upstream agents."]),
    ]
    return ScriptedReply(
        reasoning=f"Drafting the {name} from the cited findings; the rest goes to the Cut list. ",
        content="\n".join(parts) + "\n",
    )


def _proposal(line: str) -> str:
    found = _SCRIPTED_FINDING.match(line)
    if found is None:
        return line
    title = found["title"]
    return f"- **Account for the {title[:1].lower()}{title[1:]}** ({found['trust']}) " + (
        f"`{found['cite']}`{found['rest']}"
    )


def _cut(line: str) -> str:
    found = _SCRIPTED_FINDING.match(line)
    if found is None:
        return f"{line} Cut for now; reopen trigger: the focus grows to cover it."
    path = found["cite"].rsplit(":", 1)[0]
    return (
        f"- **{found['title']}** ({found['trust']}) `{found['cite']}`: cut, the focus does not "
        f"need it now. Reopen trigger: a bug report or a failing test that touches {path}."
    )


def _focus(user_text: str) -> str:
    match = re.search(r"^Focus:[ \t]*(.*)$", user_text, re.M)
    return match[1].strip() if match else ""


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading after "### Output of ", its lines) for each upstream output in the message."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(UPSTREAM_HEADING):
            sections.append((line.removeprefix(UPSTREAM_HEADING).strip() or "?", []))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _as_item(line: str) -> str:
    line = line.strip()
    return line if line.startswith(("- ", "* ")) else f"- {line}"


def _validate(report: str) -> ScriptedReply:
    cited = [line for line in report.splitlines() if _CITATION.search(line)]
    files = {c.strip("`").split(":")[0] for line in cited for c in _CITATION.findall(line)}
    failed = _FAILED_AGENT.findall(report) + [
        head.split()[0] for head, _ in _sections(report) if head.endswith("(failed)")
    ]
    failed = list(dict.fromkeys(failed))
    n, m = len(cited), len(files)
    summary = f"The report lists {_plural(n, 'cited finding')} across {_plural(m, 'file')}"
    if failed:
        summary += f", but agent {', '.join(failed)} failed, so part of the picture is missing"
    level = "low" if not n else "high" if n >= 3 and not failed else "medium"
    reasons = [f"{_plural(n, 'finding')} cite path:line evidence"]
    if failed:
        reasons.append(f"lowered because {', '.join(failed)} failed and its lens is not covered")
    if not n:
        reasons.append("with no cited findings nothing in the report can be checked")
    return ScriptedReply(
        reasoning="Checking each finding against the checklist. ",
        content=f"Summary: {summary}.\nConfidence: {level}\nReasons: {'; '.join(reasons)}.\n",
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
