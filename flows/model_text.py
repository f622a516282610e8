"""Model text made safe to show beside the verdict: the model cannot mark its own work.

Three rules, each owned here: reasoning blocks (`<think>`, `<reasoning>`, "Thinking...") stay
in the agent's stream and out of the report; check marks and verification labels the model
wrote (✓ ✅ ✔ `[verified]`) are removed, so only the checker's marks remain; and any model
text that imitates the verdict or its basis (headings at any level, `Confidence: high` lines,
a `| Verdict | Confidence |` table, "6 of 6 findings (100%) are backed by verified codebase
citations") is shown as quoted model text. Every pattern reads one line, anchored or bounded.
"""

from __future__ import annotations

import re

MODEL_WRITTEN = "> *(model-written, not the verdict)* "
MODEL_TABLE = "> *(model-written table, not the verdict)*"
QUOTED = ("> *(model-written", "> *(the validator's own words")

# Tags only where a model puts them, at the start of a line: a report that mentions `<think>`
# in its prose keeps its text.
_REASONING = re.compile(
    r"^[ \t]*<(think|thinking|reasoning|reflection|scratchpad)\b[^>\n]{0,100}>.*?</\1\s*>"
    r"|^[ \t]*◁think▷.*?◁/think▷",
    re.I | re.S | re.M,
)
_REASONING_OPEN = re.compile(r"^[ \t]*<(?:think|thinking|reasoning)\b[^>\n]{0,100}>", re.I | re.M)
_REASONING_CLOSE = re.compile(r"</(?:think|thinking|reasoning)\s*>[ \t]*$", re.I | re.M)
_THINKING = re.compile(r"^[ \t]*Thinking\.\.\.[ \t]*\n.*?^[ \t]*\.\.\.done thinking\.?[ \t]*$\n?",
                       re.M | re.S)  # fmt: skip

_MARKS = re.compile(
    r"[ \t]*(?:\[[ \t]*(?:[✓✔✅☑🗸]\ufe0f?[ \t]*)?verified[ \t]*\]"
    r"|\([ \t]*(?:[✓✔✅☑🗸]\ufe0f?[ \t]*)?verified[ \t]*\)"
    r"|(?:[✓✔✅☑🗸]\ufe0f?[ \t]*)+(?:verified\b)?)",
    re.I,
)

_VERDICT_WORDS = (
    r"(?:overall |final |executive )?(?:summary|confidence(?: level| rating| score)?|reasons?"
    r"|verdict|method|verification(?: status)?|evidence basis|basis)"
)
_BODY_HEADING = re.compile(rf"[ \t]{{0,3}}#{{1,6}}[ \t]*[*_]*{_VERDICT_WORDS}\b.*", re.I)
_BODY_VERDICT = re.compile(
    rf"[ \t]*(?:(?:[-*+]|\d{{1,3}}[.)])[ \t]+|>[ \t]*)*[*_]*{_VERDICT_WORDS}[*_]*[ \t]*[:=].*",
    re.I,
)
# Sentences that imitate the basis line the checker writes under the verdict.
_BASIS_LIKE = re.compile(
    r"\b\d{1,6}\s+of\s+\d{1,6}\s+findings\b|\bbacked by verified\b|\bcitations? (?:were |are )?"
    r"verified\b|\bconfidence(?: level| rating| score)?\s*(?:is\s+|[:=\-\u2013]\s*)[*_]*"
    r"(?:high|medium|low)\b|\b(?:high|medium|low) confidence\b",
    re.I,
)
# A heading that announces a level ("# High, every citation checked.") reads as the verdict.
_LEVEL = r"(?:high|medium|low)(?:[ \t]+confidence)?[*_]*[ \t]*(?:[,.:;!\u2014\u2013]|$)"
_BODY_HEADING_LEVEL = re.compile(rf"[ \t]{{0,3}}#{{1,6}}[ \t]*[*_]*{_LEVEL}.*", re.I)
_SETEXT_WORD = re.compile(rf"[ \t]{{0,3}}[*_]*(?:{_VERDICT_WORDS}\b|{_LEVEL}).*", re.I)
_SETEXT_RULE = re.compile(r"[ \t]{0,3}(?:=+|-+)[ \t]*")
_NOT_PARAGRAPH = re.compile(r"[ \t]*(?:$|#|>|\||[-*+][ \t]|\d{1,3}[.)][ \t]|`{3,}|~{3,})")
MAX_SETEXT_LINES = 10  # paragraph lines read above an underline
_HTML_HEADING = re.compile(rf"<h[1-6][^>\n]{{0,200}}>[ \t]*{_VERDICT_WORDS}\b", re.I)
_FENCE = re.compile(r"[ \t]*(?:`{3,}|~{3,})")
_TABLE_HEAD = re.compile(rf"[ \t]*\|.*\|[ \t]*[*_]*(?:{_VERDICT_WORDS})[*_]*[ \t]*\|", re.I)


def strip_reasoning(text: str) -> str:
    """The answer without its reasoning blocks (an unclosed one runs to the end)."""
    text = _REASONING.sub("", text)
    text = _THINKING.sub("", text)
    close = _REASONING_CLOSE.search(text)
    if close and not _REASONING_OPEN.search(text, 0, close.start()):
        text = text[close.end() :]  # the opening tag was in the prompt template
    opened = _REASONING_OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    return text.strip("\n")


def strip_marks(text: str) -> str:
    """The text without check marks or verification labels of the model's own."""
    lines = text.split("\n")
    fence = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            fence = not fence
            continue
        if not fence and ("erified" in line or any(m in line for m in "✓✔✅☑🗸")):
            lines[index] = _MARKS.sub("", line)
    return "\n".join(lines)


def clean(text: str) -> str:
    """A model's answer as the report may show it (before its citations are checked)."""
    return strip_marks(strip_reasoning(text))


def neutralise(body: str) -> str:
    """Verdict-like headings, lines and tables the model wrote become quoted model text."""
    lines = body.split("\n")
    fence = False
    table = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            fence = not fence
            continue
        if fence or line.startswith(QUOTED):
            continue  # already quoted (the report is neutralised once more as a whole)
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if table:
            if line.lstrip().startswith("|"):
                lines[index] = "> " + line
                continue
            table = False
        if _TABLE_HEAD.match(line):
            lines[index] = f"{MODEL_TABLE}\n>\n> {line}"
            table = True
        elif (
            _BODY_HEADING.fullmatch(line)
            or _BODY_HEADING_LEVEL.fullmatch(line)
            or _BODY_VERDICT.fullmatch(line)
        ):
            lines[index] = MODEL_WRITTEN + line.strip().lstrip("#>").strip()
        elif "<h" in line.lower() and _HTML_HEADING.search(line):
            lines[index] = MODEL_WRITTEN + line.strip().replace("<", "&lt;")
        elif following and _SETEXT_RULE.fullmatch(following) and line.strip():
            _setext(lines, index)
        elif _BASIS_LIKE.search(line):
            lines[index] = MODEL_WRITTEN + line.strip().lstrip("#>").strip()
    return "\n".join(lines)


def _setext(lines: list[str], index: int) -> None:
    """An underlined heading is read like a `#` one: its whole paragraph is its text.

    "Confidence" over "High, every citation checked." over `===` is one heading, "Confidence
    High, every citation checked.": quoted whole, its rule dropped.
    """
    start = index
    while (
        start > 0
        and index - start < MAX_SETEXT_LINES
        and not _NOT_PARAGRAPH.match(lines[start - 1])
        and not lines[start - 1].startswith(QUOTED)
    ):
        start -= 1
    paragraph = lines[start : index + 1]
    text = " ".join(line.strip() for line in paragraph)
    if not (any(_SETEXT_WORD.fullmatch(line) for line in paragraph) or _BASIS_LIKE.search(text)):
        return
    lines[start : index + 2] = [MODEL_WRITTEN + text, *[""] * (index + 1 - start)]


def imitates_verdict(text: str) -> bool:
    """A line of model text that reads like the verdict or its basis."""
    return bool(_BASIS_LIKE.search(text) or _BODY_VERDICT.fullmatch(text))
