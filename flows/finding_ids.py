"""Stable ids for findings, so runs can be compared: anchored on what was cited, not where.

A finding's anchor is the path and quote of its first quoted citation; without a quote, the
path of its first citation and its claim; without a citation, its claim alone. Line numbers
never take part: code moving down a file keeps its findings' ids.

Normalisation (the same for quotes and claims): Unicode NFC; control and format characters
become spaces; whitespace runs collapse to one space; the ends are trimmed of spaces and of
elision dots (`...`, `…`); case is kept (`Eval` and `eval` are different code). Claims also
lose trailing punctuation (`.`, `:`, `;`, `,`). Paths lose `./` prefixes, empty and `.`
parts and a trailing `/`; an absolute path inside the target becomes relative to it.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

ID_PREFIX = "f-"
NEW, STILL_PRESENT, RESOLVED = "new", "still present", "resolved"
MAX_ANCHOR_CHARS = 2_000  # a hostile quote is hashed on its first part only


def normalise_text(text: str) -> str:
    """Quote or claim text as anchors compare it (see the module docstring)."""
    text = unicodedata.normalize("NFC", text[: MAX_ANCHOR_CHARS * 2])
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Cs") else ch for ch in text)
    text = " ".join(text.split())
    return text.strip(" .…")[:MAX_ANCHOR_CHARS]


def normalise_claim(text: str) -> str:
    return normalise_text(text).rstrip(".:;,").strip()


def normalise_path(path: str, target: str = "") -> str:
    """A cited path as anchors compare it: relative to the target, no `./`, no `//`."""
    path = " ".join(unicodedata.normalize("NFC", path[:MAX_ANCHOR_CHARS]).split())
    path = path.replace("\\", "/")
    if target and path.startswith("/"):
        base = PurePosixPath(target)
        if PurePosixPath(path).is_relative_to(base):
            path = str(PurePosixPath(path).relative_to(base))
    absolute = path.startswith("/")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return ("/" if absolute else "") + "/".join(parts)


def anchor(finding: Mapping[str, Any], target: str = "") -> tuple[str, str, str]:
    """(kind, path, text): what a finding's id is computed from."""
    citations = [c for c in finding.get("citations") or [] if isinstance(c, Mapping)]
    for citation in citations:
        quote = normalise_text(str(citation.get("quote") or ""))
        if quote:
            return "quote", normalise_path(str(citation.get("path") or ""), target), quote
    path = normalise_path(str(citations[0].get("path") or ""), target) if citations else ""
    return "claim", path, normalise_claim(str(finding.get("claim") or ""))


def finding_id(finding: Mapping[str, Any], target: str = "") -> str:
    """The finding's stable id, e.g. `f-3b1c0d9e2a4f6b7c`."""
    kind, path, text = anchor(finding, target)
    digest = hashlib.sha256("\x00".join((kind, path, text)).encode("utf-8", "replace"))
    return ID_PREFIX + digest.hexdigest()[:16]


def compare(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Which current findings are new or still present, and which previous ones resolved.

    Both sides are findings carrying an `id`; a finding listed twice counts once.
    """
    before = {str(f["id"]): f for f in previous}
    now = {str(f["id"]): f for f in current}
    changes = {key: STILL_PRESENT if key in before else NEW for key in now}
    resolved = [f for key, f in before.items() if key not in now]
    return {
        "changes": changes,
        "resolved": resolved,
        "counts": {
            "new": sum(c == NEW for c in changes.values()),
            "still_present": sum(c == STILL_PRESENT for c in changes.values()),
            "resolved": len(resolved),
        },
    }


CHANGE_MARKS = {NEW: "**[new]**", STILL_PRESENT: "**[still present]**"}


def render_comparison(comparison: Mapping[str, Any]) -> str:
    """The report's section on what changed since the previous run (Markdown)."""
    counts = comparison["counts"]
    previous = comparison["previous"]
    lines = [
        "## Since the previous run",
        f"Compared with run `{previous['id'][:8]}` of the same flow on the same target "
        f"(finished {previous['finished_at'][:16].replace('T', ' ')} UTC): "
        f"{counts['new']} new, {counts['still_present']} still present, "
        f"{counts['resolved']} resolved.",
    ]
    resolved = comparison.get("resolved") or []
    if resolved:
        lines += ["", "Resolved (reported by the previous run, not by this one):", ""]
        for item in resolved:
            where = f" `{_code(item['citation'])}`" if item.get("citation") else ""
            lines.append(f"- **[resolved]** {_plain(item['claim'])}{where}")
    return "\n".join(lines)


def _plain(text: str) -> str:
    """Model text shown on one list line: flat, no Markdown of its own."""
    flat = " ".join(str(text).split())[:200]
    return "".join("\\" + ch if ch in "\\`*_[]<>#|!" else ch for ch in flat) or "(no claim)"


def _code(text: str) -> str:
    return " ".join(str(text).replace("`", "'").split())[:300]
