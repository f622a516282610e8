"""The scripted model's web role: search, fetch each result, then write web findings.

A sentence two fetched pages on different sites both say becomes a corroborated finding citing
both; a sentence only one page says becomes a single-source finding. Decided only by the
request messages, like the rest of the script (a resumed agent continues where it left off).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

MAX_FETCHES = 6
_RESULT_URL = re.compile(r"^\s+(https?://\S+)\s*$", re.M)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def web_specialist(body: dict[str, Any], role: str, focus: str) -> dict[str, Any]:
    """The next step as ScriptedReply fields: a tool call, or the findings."""
    messages = body.get("messages") or []
    calls = _calls(messages)
    searched = [c for c in calls if c["name"] == "web_search"]
    if not searched:
        query = focus or f"{role} sources"
        return {
            "reasoning": "Searching the web for outside sources first. ",
            "tool_calls": [("web_search", {"query": query[:200]})],
        }
    fetched = [c["args"].get("url") for c in calls if c["name"] == "web_fetch"]
    urls = _result_urls(messages, searched)
    todo = [u for u in urls if u not in fetched]
    if todo and len(fetched) < MAX_FETCHES:
        return {
            "reasoning": f"Reading {todo[0]}. ",
            "tool_calls": [("web_fetch", {"url": todo[0]})],
        }
    return {
        "reasoning": "Comparing what the pages say. ",
        "content": _findings(role, _pages(messages, calls)),
    }


def _calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for message in messages:
        for call in message.get("tool_calls") or [] if message.get("role") == "assistant" else []:
            function = call.get("function") or {}
            try:
                args = json.loads(function.get("arguments") or "{}")
            except ValueError:
                args = {}
            found.append({"id": call.get("id"), "name": function.get("name"), "args": args})
    return found


def _results(messages: list[dict[str, Any]], ids: set[str]) -> dict[str, str]:
    return {
        str(m.get("tool_call_id")): str(m.get("content") or "")
        for m in messages
        if m.get("role") == "tool" and m.get("tool_call_id") in ids
    }


def _result_urls(messages: list[dict[str, Any]], searched: list[dict[str, Any]]) -> list[str]:
    texts = _results(messages, {c["id"] for c in searched})
    return list(dict.fromkeys(u for t in texts.values() for u in _RESULT_URL.findall(t)))


def _pages(messages: list[dict[str, Any]], calls: list[dict[str, Any]]) -> dict[str, str]:
    """URL -> the page text each successful fetch returned."""
    fetches = {c["id"]: c["args"].get("url", "") for c in calls if c["name"] == "web_fetch"}
    pages = {}
    for call_id, text in _results(messages, set(fetches)).items():
        if text.startswith("refused") or "\n\n" not in text:
            continue
        pages[fetches[call_id]] = text.split("\n\n", 1)[1]
    return pages


def _sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        for sentence in _SENTENCE.split(line.strip()):
            if 20 <= len(sentence) <= 200 and '"' not in sentence and sentence.endswith("."):
                out.append(sentence)
    return out


def _findings(role: str, pages: dict[str, str]) -> str:
    if not pages:
        return (
            "No evidence found on the web.\n\n"
            f"- **{role} not assessed from outside sources** (no evidence) — reopen trigger: "
            "a search that returns pages.\n"
        )
    said: dict[str, list[str]] = {}
    for url, text in pages.items():
        for sentence in _sentences(text):
            said.setdefault(sentence, []).append(url)
    lines = [f"### {role.capitalize()} web findings", ""]
    for sentence, urls in said.items():
        hosts = {urlsplit(u).hostname for u in urls}
        if len(hosts) >= 2:
            cites = " ".join(f'(web: {u} "{sentence}")' for u in urls[:2])
            lines.append(f"- **{sentence.rstrip('.')}** {cites}: two sites agree.")
    for sentence, urls in said.items():
        if len(urls) == 1 and not sentence.startswith(("Field notes", "Copyright")):
            lines.append(
                f'- **{sentence.rstrip(".")}** (web, single-source: {urls[0]} "{sentence}"): '
                "only one site says so."
            )
            if len(lines) >= 6:
                break
    return "\n".join(lines) + "\n"
