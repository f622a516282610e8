"""The read-only tools an agent may call, confined to the run's target directory.

Arguments are pydantic models (their JSON schema is what the model sees); every call returns a
ToolResult and never raises: whatever the target holds (symlink loops, FIFOs, unreadable files,
names that are not UTF-8) or the model sends (huge numbers, deep JSON), the model reads an
error naming the path. A tool name outside READ_ONLY_TOOLS gets an error result and nothing
runs. Everything a tool returns passes through runs.engine.target.secrets.redact, and searches
run in linear time under a deadline (runs.engine.target.search).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runs.engine import crashpoints
from runs.engine.problems import validation_problems
from runs.engine.target.confinement import Confinement, Refused, TargetChanged, printable
from runs.engine.target.gitread import GitAnswer, GitLimits, GitReader
from runs.engine.target.search import SKIP_DIRS as SKIP_DIRS  # importable here, where it lived
from runs.engine.target.search import (
    Deadline,
    Entry,
    Walk,
    compile_glob,
    compile_pattern,
    grep_file,
)
from runs.engine.target.secrets import is_secret_name, redact, redact_name, shown_name

log = logging.getLogger(__name__)
# Longer tool arguments are refused before they are parsed (no tool needs more).
MAX_ARGUMENT_CHARS = 65_536
MAX_LINE_NUMBER = 10_000_000
MAX_PATH = 4096
# What is redacted past the output limit, so a secret across the cut is seen whole by the rule.
CAP_MARGIN = 4096


@dataclass(frozen=True, kw_only=True)
class ToolLimits:
    max_file_bytes: int = 512_000
    max_output_chars: int = 16_000
    max_grep_matches: int = 200
    max_list_entries: int = 500
    max_read_lines: int = 400
    git_timeout: float = 10.0
    search_seconds: float = 5.0  # grep, glob and list_dir stop here and say so
    max_walk_entries: int = 20_000  # entries one search may visit


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    ok: bool
    content: str  # what the model reads (the error text when not ok)
    summary: str  # one short line for the pane and the terminal


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class ListDirArgs(Args):
    path: str = Field(default=".", max_length=MAX_PATH)
    depth: int = Field(default=1, ge=1, le=3)


class ReadFileArgs(Args):
    path: str = Field(max_length=MAX_PATH)
    start_line: int = Field(default=1, ge=1, le=MAX_LINE_NUMBER)
    end_line: int | None = Field(default=None, ge=1, le=MAX_LINE_NUMBER)


class GrepArgs(Args):
    pattern: str = Field(min_length=1, max_length=500)
    path: str = Field(default=".", max_length=MAX_PATH)
    glob: str | None = Field(default=None, max_length=300)
    max_results: int = Field(default=50, ge=1, le=200)


class GlobArgs(Args):
    pattern: str = Field(min_length=1, max_length=300)


class FileInfoArgs(Args):
    path: str = Field(max_length=MAX_PATH)


class GitLogArgs(Args):
    path: str | None = None
    max_count: int = Field(default=20, ge=1, le=100)


class GitShowArgs(Args):
    rev: str
    path: str | None = None


class GitBlameArgs(Args):
    path: str
    start_line: int = Field(default=1, ge=1)
    end_line: int | None = Field(default=None, ge=1)


class GitDiffArgs(Args):
    rev_from: str = "HEAD"
    rev_to: str | None = None
    path: str | None = None


DESCRIPTIONS = {
    "list_dir": "List files and directories under a path of the target (depth 1-3).",
    "read_file": "Read a text file with line numbers; use start_line/end_line for a range.",
    "grep": "Search files for a regular expression (RE2 syntax); prints path:line:text.",
    "glob": "Find files by glob pattern, e.g. '**/*.py'.",
    "file_info": "Type, size, line count and modification time of a path.",
    "git_log": "Recent commits (optionally touching a path).",
    "git_show": "Show a commit, or a file at a revision when path is given.",
    "git_blame": "Who last changed each line of a file (optionally a line range).",
    "git_diff": "Diff between revisions (default: HEAD against the working tree).",
}
ARGS: dict[str, type[Args]] = {
    "list_dir": ListDirArgs,
    "read_file": ReadFileArgs,
    "grep": GrepArgs,
    "glob": GlobArgs,
    "file_info": FileInfoArgs,
    "git_log": GitLogArgs,
    "git_show": GitShowArgs,
    "git_blame": GitBlameArgs,
    "git_diff": GitDiffArgs,
}
READ_ONLY_TOOLS: frozenset[str] = frozenset(ARGS)
GIT_TOOLS = frozenset(name for name in ARGS if name.startswith("git_"))


class ReadOnlyTools:
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        limits: ToolLimits | None = None,
        confinement: Confinement | None = None,
    ):
        # The engine passes the confinement open_target checked against the run's record.
        self.confine = confinement or Confinement(root)
        self.limits = limits or ToolLimits()
        self.git = GitReader(self.root, limits=GitLimits(timeout=self.limits.git_timeout))
        self.has_git = self.git.available

    @property
    def root(self) -> Path:
        return self.confine.root

    def available(self) -> list[str]:
        return [n for n in ARGS if self.has_git or n not in GIT_TOOLS]

    def specs(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": DESCRIPTIONS[name],
                    "parameters": ARGS[name].model_json_schema(),
                },
            }
            for name in self.available()
        ]

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        """Run one tool call; never raises (a target or a model cannot crash the agent)."""
        try:
            return self._call(name, arguments)
        except Exception as exc:
            log.warning("tool %s failed unexpectedly", name, exc_info=True)
            return _error(f"{name} failed: {_describe(exc)}", f"{name} failed")

    def _call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        if name not in self.available():
            offered = ", ".join(self.available())
            reason = (
                _not_offered(name)
                if name not in READ_ONLY_TOOLS
                else (self.git.refusal or "no git here")
            )
            return _error(
                f"tool {printable(name[:100])!r} is not available: {reason}; available: {offered}",
                f"{printable(name[:60])} refused",
            )
        if isinstance(arguments, str) and len(arguments) > MAX_ARGUMENT_CHARS:
            return _error(
                f"bad arguments for {name}: {len(arguments)} characters (at most "
                f"{MAX_ARGUMENT_CHARS})",
                f"{name}: bad arguments",
            )
        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
            args = ARGS[name].model_validate(raw)
        except (ValueError, ValidationError, TypeError, RecursionError) as exc:
            # ValueError also covers integers past Python's digit limit.
            return _error(f"bad arguments for {name}: {_short(exc)}", f"{name}: bad arguments")
        try:
            self.confine.verify()
        except TargetChanged as exc:
            return _error(str(exc), f"{name}: target changed")
        handler: Callable[[Any], tuple[str, str]] = getattr(self, f"_{name}")
        crashpoints.reached("tool", "before")
        try:
            content, summary = handler(args)
        except Refused as exc:
            return _error(redact(f"refused: {exc}"), f"{name} refused")
        except Exception as exc:  # loops, FIFOs, permissions, odd names: an error, not a crash
            named = _named_path(args)
            why = _describe(exc)
            if isinstance(exc, OSError) and exc.strerror:
                why = f"{exc.__class__.__name__} ({exc.strerror})"
            return _error(f"{name} failed{named}: {why}", f"{name} failed{named}")
        return ToolResult(ok=True, content=self._cap(content), summary=redact(summary)[:200])

    # --- tools ---------------------------------------------------------------------------

    def _list_dir(self, args: ListDirArgs) -> tuple[str, str]:
        base = self.confine.resolve(args.path)
        if not stat.S_ISDIR(self.confine.stat(base).st_mode):
            raise Refused(f"{printable(redact_name(args.path))} is not a directory")
        lines = []
        walk = self._walk(base, args.depth)
        for entry in walk:
            # A folder keeps its name (`credentials/` of code); a secret file's is withheld.
            shown = printable(redact_name(entry.rel) if entry.is_dir else shown_name(entry.rel))
            if entry.is_dir:
                lines.append(f"{shown}/")
            elif is_secret_name(entry.rel):
                lines.append(f"{shown}  [not readable]")
            else:
                lines.append(f"{shown}  ({self._size(entry.real)} bytes)")
            if len(lines) >= self.limits.max_list_entries:
                lines.append(f"[stopped at {len(lines)} entries]")
                break
        if walk.stopped:
            lines.append(f"[{walk.stopped}]")
        return "\n".join(lines) or "(empty)", f"list_dir {self.confine.shown(base)}"

    def _read_file(self, args: ReadFileArgs) -> tuple[str, str]:
        real = self.confine.resolve(args.path)
        rel = self.confine.shown(real)
        size = self.confine.check_readable(real).st_size
        ranged = args.start_line > 1 or args.end_line is not None
        if size > self.limits.max_file_bytes * (8 if ranged else 1):
            raise Refused(f"{rel} is too large ({size} bytes); read a line range or grep it")
        lines = _decode(self.confine.read_bytes(real, size + 1)).splitlines()
        total = len(lines)
        start = min(args.start_line, max(total, 1))
        end = min(args.end_line or total, total, start + self.limits.max_read_lines - 1)
        body = "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(start, end + 1))
        return f"{rel} (lines {start}-{end} of {total})\n{body}", f"read_file {rel}:{start}-{end}"

    def _grep(self, args: GrepArgs) -> tuple[str, str]:
        regex = compile_pattern(args.pattern)
        base = self.confine.resolve(args.path)
        wanted = compile_glob(args.glob) if args.glob else None
        deadline = Deadline(self.limits.search_seconds)
        walk = self._walk(base, depth=None, deadline=deadline)
        candidates = (
            iter([Entry(real=base, rel=self.confine.relative(base), is_dir=False)])
            if stat.S_ISREG(self.confine.stat(base).st_mode)
            else iter(walk)
        )
        hits: list[str] = []
        for entry in candidates:
            if entry.is_dir or (wanted and not wanted.fullmatch(printable(redact_name(entry.rel)))):
                continue
            room = args.max_results - len(hits)
            hits += grep_file(
                self.confine, entry, regex, room, self.limits.max_file_bytes, deadline
            )
            if len(hits) >= args.max_results:
                break
            if deadline.expired():
                walk.stopped = f"stopped at the {deadline.seconds:g} s time limit"
                break
        count = f"[{len(hits)} match{'es' if len(hits) != 1 else ''}]"
        if walk.stopped:
            count += f" [search {walk.stopped}; narrow the path or the glob]"
        summary = f"grep {printable(args.pattern[:80])!r} ({len(hits)} matches)"
        return "\n".join([*hits, count]), summary

    def _glob(self, args: GlobArgs) -> tuple[str, str]:
        regex = compile_glob(args.pattern)
        walk = self._walk(self.root, depth=None)
        # Names are matched as they are shown: one that is not UTF-8 cannot trip the matcher,
        # and a credential in a name cannot be probed character by character.
        # A secret file's name is not shown; a glob that names it only learns that one matched.
        matches = [
            printable(redact_name(entry.rel) if entry.is_dir else shown_name(entry.rel))
            for entry in walk
            if regex.fullmatch(printable(redact_name(entry.rel)))
        ]
        shown = matches[: self.limits.max_list_entries]
        if walk.stopped:
            shown.append(f"[search {walk.stopped}]")
        summary = f"glob {printable(args.pattern[:80])} ({len(matches)})"
        return "\n".join(shown) or "(no matches)", summary

    def _file_info(self, args: FileInfoArgs) -> tuple[str, str]:
        real = self.confine.resolve(args.path)
        rel = self.confine.shown(real)
        info = self.confine.stat(real)  # the entry itself, reached without following a link
        modified = datetime.fromtimestamp(info.st_mtime, tz=UTC).isoformat(timespec="seconds")
        is_file = stat.S_ISREG(info.st_mode)
        kind = "directory" if stat.S_ISDIR(info.st_mode) else "file" if is_file else "special"
        secret = is_secret_name(self.confine.relative(real))
        lines = [
            f"path: {rel}",
            f"type: {kind}",
            "size: hidden (secret file)" if secret else f"size: {info.st_size} bytes",
            f"modified: {modified}",
        ]
        if is_file and not secret and info.st_size <= self.limits.max_file_bytes:
            try:
                text = _decode(self.confine.read_bytes(real, info.st_size + 1))
                lines.append(f"lines: {len(text.splitlines())}")
            except Refused as exc:
                lines.append(f"content: {exc}")
        return "\n".join(lines), f"file_info {rel}"

    def _git_log(self, args: GitLogArgs) -> tuple[str, str]:
        answer = self.git.log(args.path, args.max_count)
        return _git_text(answer), f"git_log {redact_name(args.path or '.')}"

    def _git_show(self, args: GitShowArgs) -> tuple[str, str]:
        answer = self.git.show(args.rev, args.path)
        where = f"{args.rev}:{redact_name(args.path)}" if args.path else args.rev
        return _git_text(answer), f"git_show {where}"

    def _git_blame(self, args: GitBlameArgs) -> tuple[str, str]:
        end = args.end_line or args.start_line + self.limits.max_read_lines - 1
        answer = self.git.blame(args.path, args.start_line, end)
        return _git_text(answer), f"git_blame {redact_name(args.path)}:{args.start_line}-{end}"

    def _git_diff(self, args: GitDiffArgs) -> tuple[str, str]:
        answer = self.git.diff(args.rev_from, args.rev_to, args.path)
        revs = " ".join([args.rev_from, args.rev_to or "(working tree)"])
        return _git_text(answer), f"git_diff {revs}"

    # --- helpers -------------------------------------------------------------------------

    def _walk(self, base: Path, depth: int | None, deadline: Deadline | None = None) -> Walk:
        """Entries under base, bounded in count and time; never follows links out."""
        return Walk(
            confine=self.confine,
            base=base,
            depth=depth,
            limit=self.limits.max_walk_entries,
            deadline=deadline or Deadline(self.limits.search_seconds),
        )

    def _size(self, real: Path) -> int:
        try:
            return self.confine.stat(real).st_size
        except Refused:
            return 0

    def _cap(self, text: str) -> str:
        """The answer redacted and cut to the output limit: only what can be shown (and a
        margin) is redacted, so a huge answer costs the rule no more than a small one."""
        limit = self.limits.max_output_chars
        redacted = redact(text[: limit + CAP_MARGIN])
        if len(text) <= limit + CAP_MARGIN and len(redacted) <= limit:
            return redacted
        return redacted[:limit] + f"\n[truncated: {max(len(text) - limit, 1)} more chars]"


def _not_offered(name: str) -> str:
    """Why a tool outside the target set is refused (the web tools are offered elsewhere)."""
    if name in ("web_search", "web_fetch"):
        return (
            "the web is not offered to this agent (the run's web switch is off, or its role "
            "reads no outside sources)"
        )
    return "this agent is read-only"


def _git_text(answer: GitAnswer) -> str:
    if not answer.ok:
        raise Refused(answer.text)
    return answer.text


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _error(message: str, summary: str) -> ToolResult:
    return ToolResult(ok=False, content=message, summary=summary)


def _describe(exc: BaseException) -> str:
    """What went wrong, in words, without echoing file contents or absolute paths."""
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeError):
        return "a name or text that is not valid UTF-8"
    return exc.__class__.__name__


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return validation_problems(exc, whole="arguments", limit=3)
    return str(exc)[:200]


def _named_path(args: BaseModel) -> str:
    """The path a failed call named (the model's text), to follow the tool's name."""
    path = getattr(args, "path", None)
    return f" for {printable(path[:200])!r}" if isinstance(path, str) else ""
