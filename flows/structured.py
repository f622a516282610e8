"""Schema-shaped answers: the JSON schemas a server can enforce, and their Markdown.

A server that accepts `response_format` (llama.cpp, vLLM, Ollama) constrains the answer to a
schema, so findings arrive as fields (claim, trust class, severity, citations as path and
lines, quote) instead of prose to be read. The schema only shapes the text: the values are
still model text, so they are validated here with pydantic, cleaned and capped, and never
trusted. The result is rendered to the same Markdown a prose answer has (the citation form the
checker verifies, the finding form `flows.findings` reads), so citations, findings, Confidence
and the pane stay one path.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from flows.citations import MARK_VERIFIED
from flows.models import FlowKind, StepKind

MAX_ANSWER_CHARS = 200_000  # a structured answer longer than this is not parsed
MAX_FINDINGS = 60
MAX_CITATIONS = 8  # per finding
MAX_ITEMS = 30  # no-evidence items, conflicts, failed checks, lenses not covered
CLAIM_CHARS = 300
TEXT_CHARS = 1_500
QUOTE_CHARS = 300
PATH_CHARS = 300
MAX_LINE = 10_000_000
# A path the renderer can put in a code span and the scanner reads back as one token: no
# whitespace, no backticks or brackets, no control bytes. `..` and absolute paths are allowed
# through: the citation checker flags them ("outside the target"), visibly.
_SAFE_PATH = re.compile(r"[^\s`*()\[\]{}<>|,;\"'\\\x00-\x1f\x7f]{1,300}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\ud800-\udfff]")
_EMPHASIS = re.compile(r"\*{2,}|_{2,}")
_BLOCK_START = re.compile(r"[#>+*=~`|-]|\d{1,9}[.)]")


class Shape(StrEnum):
    """The schema a step kind answers in, when its server can enforce one."""

    FINDINGS = "findings"  # the synthesizer's report
    VERDICT = "verdict"  # the validator's Summary, Confidence and Reasons


def shape_for(step_kind: str, flow_kind: str) -> Shape | None:
    """Which step kinds answer schema-shaped (see docs/architecture.md for the measurements).

    Specialists need tools on every turn, and on llama.cpp a schema disables tool calls (its
    grammar admits only the JSON), so they write prose. Draft flows write a document with a
    Cut list, which the findings schema does not fit.
    """
    if step_kind == StepKind.VALIDATOR:
        return Shape.VERDICT
    if step_kind == StepKind.SYNTHESIZER and flow_kind == FlowKind.ANALYSIS:
        return Shape.FINDINGS
    return None


def _clean(limit: int) -> BeforeValidator:
    """Model text made one safe line: control bytes gone, whitespace collapsed, length capped."""

    def clean(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # pydantic rejects it with the field's name
        text = " ".join(_CONTROL.sub(" ", value).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    return BeforeValidator(clean)


def _capped_list(limit: int) -> BeforeValidator:
    return BeforeValidator(lambda value: value[:limit] if isinstance(value, list) else value)


Claim = Annotated[str, _clean(CLAIM_CHARS), Field(min_length=1)]
Text = Annotated[str, _clean(TEXT_CHARS)]
Quote = Annotated[str, _clean(QUOTE_CHARS)]
Trust = Literal["codebase", "web", "provided", "no evidence"]
Severity = Literal["critical", "high", "medium", "low"]


class Strict(BaseModel):
    # Unknown keys are ignored, not an error: a server that adds one must not cost the answer.
    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class CitationField(Strict):
    # Kept as written (never shortened: a shortened path names another file), only bounded;
    # the renderer flags one it cannot show.
    path: Annotated[
        str, BeforeValidator(lambda v: v[: PATH_CHARS + 1] if isinstance(v, str) else v)
    ] = Field(min_length=1)
    start_line: int = Field(ge=0, le=MAX_LINE)
    end_line: int | None = Field(default=None, ge=0, le=MAX_LINE)
    quote: Quote = ""


class FindingField(Strict):
    claim: Claim
    trust: Trust
    severity: Severity | None = None
    citations: Annotated[list[CitationField], _capped_list(MAX_CITATIONS)] = []
    why: Text = ""
    single_source: bool = False


class NoEvidenceField(Strict):
    claim: Claim
    reopen_trigger: Text = ""


class FindingsAnswer(Strict):
    findings: Annotated[list[FindingField], _capped_list(MAX_FINDINGS)] = []
    no_evidence: Annotated[list[NoEvidenceField], _capped_list(MAX_ITEMS)] = []
    conflicts: Annotated[list[Text], _capped_list(MAX_ITEMS)] = []
    not_covered: Annotated[list[Text], _capped_list(MAX_ITEMS)] = []


class VerdictAnswer(Strict):
    summary: Annotated[str, _clean(TEXT_CHARS), Field(min_length=1)]
    confidence: Literal["low", "medium", "high"]
    reasons: Text = ""
    failed_checks: Annotated[list[Text], _capped_list(MAX_ITEMS)] = []


# The schemas sent to the server, written by hand: small, no $ref, bounds the grammar can
# carry cheaply (maxItems, enums); string lengths are capped here, not by the grammar, where a
# long maxLength would make a large grammar.
_STRING = {"type": "string"}
_CITATION_SCHEMA = {
    "type": "object",
    "properties": {
        "path": _STRING,
        "start_line": {"type": "integer", "minimum": 1},
        "end_line": {"type": "integer", "minimum": 1},
        "quote": _STRING,
    },
    "required": ["path", "start_line", "end_line", "quote"],
    "additionalProperties": False,
}
FINDINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "findings": {
            "type": "array",
            "maxItems": MAX_FINDINGS,
            "items": {
                "type": "object",
                "properties": {
                    "claim": _STRING,
                    "trust": {"enum": ["codebase", "web", "provided"]},
                    "severity": {"enum": ["critical", "high", "medium", "low"]},
                    "citations": {
                        "type": "array",
                        "maxItems": MAX_CITATIONS,
                        "items": _CITATION_SCHEMA,
                    },
                    "why": _STRING,
                },
                "required": ["claim", "trust", "severity", "citations", "why"],
                "additionalProperties": False,
            },
        },
        "no_evidence": {
            "type": "array",
            "maxItems": MAX_ITEMS,
            "items": {
                "type": "object",
                "properties": {"claim": _STRING, "reopen_trigger": _STRING},
                "required": ["claim", "reopen_trigger"],
                "additionalProperties": False,
            },
        },
        "conflicts": {"type": "array", "maxItems": MAX_ITEMS, "items": _STRING},
        "not_covered": {"type": "array", "maxItems": MAX_ITEMS, "items": _STRING},
    },
    "required": ["findings", "no_evidence", "conflicts", "not_covered"],
    "additionalProperties": False,
}
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": _STRING,
        "confidence": {"enum": ["high", "medium", "low"]},
        "reasons": _STRING,
        "failed_checks": {"type": "array", "maxItems": MAX_ITEMS, "items": _STRING},
    },
    "required": ["summary", "confidence", "reasons", "failed_checks"],
    "additionalProperties": False,
}
_SCHEMAS = {Shape.FINDINGS: FINDINGS_SCHEMA, Shape.VERDICT: VERDICT_SCHEMA}
_MODELS: dict[Shape, type[Strict]] = {Shape.FINDINGS: FindingsAnswer, Shape.VERDICT: VerdictAnswer}

RESTATE = {
    Shape.FINDINGS: (
        "Now give the same report as JSON fitting the schema. One entry per finding: a short "
        "claim, its trust class, its severity, why it matters, and each citation as fields "
        "(path relative to the target, start_line, end_line, and the quoted line text). Claims "
        "without evidence go in no_evidence with a reopen trigger; lenses of failed agents in "
        "not_covered. Keep every citation you made; add none you did not read."
    ),
    Shape.VERDICT: (
        "Now give the same verdict as JSON fitting the schema: summary (two or three plain "
        "sentences), confidence (high, medium or low), reasons, and the checklist items the "
        "report fails."
    ),
}


def response_format(shape: Shape) -> dict[str, Any]:
    """The OpenAI-compatible `response_format` that asks the server to enforce the schema."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": f"orchestrator_{shape.value}",
            "strict": True,
            "schema": _SCHEMAS[shape],
        },
    }


class Unusable(ValueError):
    """The structured answer cannot be used; the message says why in a few words."""


def parse(shape: Shape, text: str) -> FindingsAnswer | VerdictAnswer:
    """The structured answer, validated; Unusable when it is not JSON of the expected shape."""
    if len(text) > MAX_ANSWER_CHARS:
        raise Unusable(f"longer than {MAX_ANSWER_CHARS:,} characters")
    try:
        data = json.loads(text, strict=False)  # raw control bytes are cleaned below
    except RecursionError:
        raise Unusable("nested too deeply") from None
    except ValueError as exc:  # a cut-off answer (finish_reason length) ends here
        raise Unusable(f"not JSON ({str(exc)[:80]})") from None
    try:
        answer = _MODELS[shape].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])[:80]
        raise Unusable(f"not the {shape.value} schema ({where}: {first['msg'][:80]})") from None
    assert isinstance(answer, FindingsAnswer | VerdictAnswer)
    return answer


def render(answer: FindingsAnswer | VerdictAnswer) -> str:
    """The Markdown a prose answer would have been, in the forms the checker verifies."""
    if isinstance(answer, VerdictAnswer):
        return _render_verdict(answer)
    return _render_findings(answer)


def _render_verdict(answer: VerdictAnswer) -> str:
    lines = [
        f"Summary: {_inline(answer.summary)}",
        f"Confidence: {answer.confidence}",
        f"Reasons: {_inline(answer.reasons) or 'none given'}",
    ]
    if answer.failed_checks:
        lines += ["", "Checklist items the report fails:"]
        lines += [f"- {_item(item)}" for item in answer.failed_checks if item]
    return "\n".join(lines) + "\n"


def _render_findings(answer: FindingsAnswer) -> str:
    parts = ["## Findings", ""]
    if not answer.findings:
        parts.append("No evidence found.")
    for finding in answer.findings:
        parts.append(_finding_line(finding))
    if answer.no_evidence:
        parts += ["", "## No evidence", ""]
        for item in answer.no_evidence:
            trigger = _inline(item.reopen_trigger) or "none named"
            parts.append(f"- **{_claim(item.claim)}** (no evidence) — reopen trigger: {trigger}")
    if answer.conflicts:
        parts += ["", "## Conflicts", ""]
        parts += [f"- {_item(item)}" for item in answer.conflicts if item]
    if answer.not_covered:
        parts += ["", "## Not covered", ""]
        parts += [f"- {_item(item)}" for item in answer.not_covered if item]
    return "\n".join(parts) + "\n"


def _finding_line(finding: FindingField) -> str:
    label: str = finding.trust
    if finding.severity:
        label += f", severity {finding.severity}"
    if finding.single_source:
        label += ", single-source"
    cited = [_citation(c) for c in finding.citations]
    why = _inline(finding.why)
    line = f"- **{_claim(finding.claim)}** ({label})"
    if cited:
        line += " " + "; ".join(cited)
    return line + (f": {why}" if why else "")


def _citation(citation: CitationField) -> str:
    """`path:start-end` — `quote`, or a visible flag when the path cannot be written safely."""
    path = citation.path
    if not _SAFE_PATH.fullmatch(path):
        return "**[unverified: a citation whose path cannot be shown]**"
    start = citation.start_line
    end = citation.end_line if citation.end_line and citation.end_line > start else start
    lines = str(start) if end == start else f"{start}-{end}"
    text = f"`{path}:{lines}`"
    # A backtick would end the code span; an elision keeps the rest of the quote checkable.
    quote = " ... ".join(p.strip() for p in citation.quote.split("`") if p.strip())
    if quote.strip(". "):
        text += f" — `{quote}`"
    return text


def _claim(text: str) -> str:
    """A claim that stays one bold span: no emphasis runs inside, never empty."""
    return _EMPHASIS.sub("", _inline(text)).strip("*_ ") or "(no claim)"


def _inline(text: str) -> str:
    """One line: no raw HTML, and no verified mark of its own (only the checker writes ✓)."""
    text = " ".join(text.replace(MARK_VERIFIED, "").split())
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _item(text: str) -> str:
    """A list item's text that cannot open a block inside the item."""
    text = _inline(text)
    return "\\" + text if _BLOCK_START.match(text) else text
