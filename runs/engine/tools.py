"""The read-only tools an agent may call, confined to the run's target directory.

Arguments are pydantic models (their JSON schema is what the model sees); every call returns a
ToolResult and never raises. A tool name outside READ_ONLY_TOOLS gets an error result and
nothing runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runs.engine import crashpoints
from runs.engine.confinement import Confinement, Refused
from runs.engine.problems import validation_problems
from runs.engine.secrets import SECRET_DIRS, SECRET_NAMES, is_secret_name

SKIP_DIRS = frozenset(
    {
        ".hypothesis",
        ".git",
        "node_modules",
        "__pycache__",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
    }
)
# Patches of whole commits leave secret files out, whatever history holds.
SECRET_PATHSPECS = tuple(
    [f":(exclude,glob)**/{pattern}" for pattern in SECRET_NAMES]
    + [f":(exclude,glob)**/{name}/**" for name in sorted(SECRET_DIRS)]
)
PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S
)
SAFE_REV = re.compile(r"^[A-Za-z0-9_./~^@{}-]{1,100}$")


@dataclass(frozen=True, kw_only=True)
class ToolLimits:
    max_file_bytes: int = 512_000
    max_output_chars: int = 16_000
    max_grep_matches: int = 200
    max_list_entries: int = 500
    max_read_lines: int = 400
    git_timeout: float = 10.0


@dataclass(frozen=True, kw_only=True)
class ToolResult:
    ok: bool
    content: str  # what the model reads (the error text when not ok)
    summary: str  # one short line for the pane and the terminal


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class ListDirArgs(Args):
    path: str = "."
    depth: int = Field(default=1, ge=1, le=3)


class ReadFileArgs(Args):
    path: str
    start_line: int = Field(default=1, ge=1)
    end_line: int | None = Field(default=None, ge=1)


class GrepArgs(Args):
    pattern: str = Field(min_length=1, max_length=500)
    path: str = "."
    glob: str | None = None
    max_results: int = Field(default=50, ge=1, le=200)


class GlobArgs(Args):
    pattern: str = Field(min_length=1, max_length=300)


class FileInfoArgs(Args):
    path: str


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
    "grep": "Search files for a Python regular expression; prints path:line:text.",
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
    def __init__(self, root: str | os.PathLike[str], *, limits: ToolLimits | None = None):
        self.confine = Confinement(root)
        self.limits = limits or ToolLimits()
        self.has_git = _is_git_top_level(self.confine.root)

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
        if name not in self.available():
            offered = ", ".join(self.available())
            reason = "this agent is read-only" if name not in READ_ONLY_TOOLS else "no git here"
            return _error(
                f"tool {name!r} is not available: {reason}; available: {offered}", f"{name} refused"
            )
        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
            args = ARGS[name].model_validate(raw)
        except (json.JSONDecodeError, ValidationError, TypeError) as exc:
            return _error(f"bad arguments for {name}: {_short(exc)}", f"{name}: bad arguments")
        handler: Callable[[Any], tuple[str, str]] = getattr(self, f"_{name}")
        crashpoints.reached("tool", "before")
        try:
            content, summary = handler(args)
        except Refused as exc:
            return _error(f"refused: {exc}", f"{name} refused")
        except (OSError, UnicodeError) as exc:
            where = _named_path(args)
            why = exc.__class__.__name__
            if isinstance(exc, OSError) and exc.strerror:
                why += f" ({exc.strerror})"
            return _error(f"{name} failed{where}: {why}", f"{name} failed{where}")
        return ToolResult(ok=True, content=self._cap(content), summary=summary[:200])

    # --- tools ---------------------------------------------------------------------------

    def _list_dir(self, args: ListDirArgs) -> tuple[str, str]:
        base = self.confine.resolve(args.path)
        if not base.is_dir():
            raise Refused(f"{args.path} is not a directory")
        lines = []
        for real, rel, is_dir in self._walk(base, args.depth):
            if is_dir:
                lines.append(f"{rel}/")
            elif is_secret_name(rel):
                lines.append(f"{rel}  [secret: not readable]")
            else:
                lines.append(f"{rel}  ({_size(real)} bytes)")
            if len(lines) >= self.limits.max_list_entries:
                lines.append(f"[stopped at {len(lines)} entries]")
                break
        return "\n".join(lines) or "(empty)", f"list_dir {self.confine.relative(base)}"

    def _read_file(self, args: ReadFileArgs) -> tuple[str, str]:
        real = self.confine.resolve(args.path)
        rel = self.confine.relative(real)
        self.confine.check_readable(real)
        size = real.stat().st_size
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
        try:
            regex = re.compile(args.pattern)
        except re.error as exc:
            raise Refused(f"invalid regular expression: {exc}") from None
        base = self.confine.resolve(args.path)
        wanted = _glob_regex(args.glob) if args.glob else None
        hits: list[str] = []
        candidates = (
            [(base, self.confine.relative(base), False)]
            if base.is_file()
            else (self._walk(base, depth=None))
        )
        for real, rel, is_dir in candidates:
            if is_dir or (wanted and not wanted.fullmatch(rel)):
                continue
            hits += self._grep_file(real, rel, regex, args.max_results - len(hits))
            if len(hits) >= args.max_results:
                break
        count = f"[{len(hits)} match{'es' if len(hits) != 1 else ''}]"
        return "\n".join([*hits, count]), f"grep {args.pattern!r} ({len(hits)} matches)"

    def _grep_file(self, real: Path, rel: str, regex: re.Pattern[str], room: int) -> list[str]:
        if room <= 0 or is_secret_name(rel):
            return []
        try:
            if real.stat().st_size > self.limits.max_file_bytes:
                return []
            text = _decode(self.confine.read_bytes(real, self.limits.max_file_bytes))
        except (Refused, OSError):
            return []  # binaries, secrets and special files are skipped silently
        found = []
        for number, line in enumerate(text.splitlines(), start=1):
            if regex.search(line[:2000]):
                found.append(f"{rel}:{number}:{line.strip()[:200]}")
                if len(found) >= room:
                    break
        return found

    def _glob(self, args: GlobArgs) -> tuple[str, str]:
        regex = _glob_regex(args.pattern)
        matches = [rel for _, rel, _ in self._walk(self.root, depth=None) if regex.fullmatch(rel)]
        shown = matches[: self.limits.max_list_entries]
        return "\n".join(shown) or "(no matches)", f"glob {args.pattern} ({len(matches)})"

    def _file_info(self, args: FileInfoArgs) -> tuple[str, str]:
        real = self.confine.resolve(args.path)
        rel = self.confine.relative(real)
        info = real.stat()
        modified = datetime.fromtimestamp(info.st_mtime, tz=UTC).isoformat(timespec="seconds")
        kind = "directory" if real.is_dir() else "file" if real.is_file() else "special"
        lines = [
            f"path: {rel}",
            f"type: {kind}",
            f"size: {info.st_size} bytes",
            f"modified: {modified}",
        ]
        if (
            kind == "file"
            and not is_secret_name(rel)
            and info.st_size <= self.limits.max_file_bytes
        ):
            try:
                text = _decode(self.confine.read_bytes(real, info.st_size + 1))
                lines.append(f"lines: {len(text.splitlines())}")
            except Refused as exc:
                lines.append(f"content: {exc}")
        return "\n".join(lines), f"file_info {rel}"

    def _git_log(self, args: GitLogArgs) -> tuple[str, str]:
        argv = ["log", f"--max-count={args.max_count}", "--format=%h %ad %an: %s", "--date=short"]
        out = self._git(argv, args.path)
        return out, f"git_log {args.path or '.'}"

    def _git_show(self, args: GitShowArgs) -> tuple[str, str]:
        rev = _rev(args.rev)
        if args.path is None:
            argv = ["show", "--stat", "--patch", "--no-ext-diff", "--no-textconv", rev]
            return self._git([*argv, "--", ".", *SECRET_PATHSPECS], None), f"git_show {rev}"
        rel = self._checked_rel(args.path)
        return self._git(["show", "--no-textconv", f"{rev}:{rel}"], None), f"git_show {rev}:{rel}"

    def _git_blame(self, args: GitBlameArgs) -> tuple[str, str]:
        rel = self._checked_rel(args.path)
        end = args.end_line or args.start_line + self.limits.max_read_lines - 1
        argv = ["blame", "--date=short", f"-L{args.start_line},{end}"]
        return self._git(argv, rel), f"git_blame {rel}:{args.start_line}-{end}"

    def _git_diff(self, args: GitDiffArgs) -> tuple[str, str]:
        revs = [_rev(args.rev_from)] + ([_rev(args.rev_to)] if args.rev_to else [])
        argv = ["diff", "--no-ext-diff", "--no-textconv", *revs]
        if args.path is None:
            out = self._git([*argv, "--", ".", *SECRET_PATHSPECS], None)
        else:
            out = self._git(argv, args.path)
        return out or "(no differences)", f"git_diff {' '.join(revs)}"

    # --- helpers -------------------------------------------------------------------------

    def _walk(self, base: Path, depth: int | None) -> Iterator[tuple[Path, str, bool]]:
        """(real path, relative path, is_dir) under base; never follows links out of the root."""
        base_depth = len(base.relative_to(self.root).parts)
        for current, dirs, files in os.walk(base, followlinks=False):
            here = Path(current)
            level = len(here.relative_to(self.root).parts) - base_depth
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            entries = [(d, True) for d in dirs] + [(f, False) for f in sorted(files)]
            for name, is_dir in entries:
                real = (here / name).resolve()
                if not real.is_relative_to(self.root):
                    continue  # a symlink leading out of the target: invisible
                yield here / name, (here / name).relative_to(self.root).as_posix(), is_dir
            if depth is not None and level + 1 >= depth:
                dirs[:] = []

    def _checked_rel(self, raw: str) -> str:
        real = self.confine.resolve(raw)
        rel = self.confine.relative(real)
        if is_secret_name(rel):
            raise Refused(f"{rel}: secret file, not shown")
        return rel

    def _git(self, argv: list[str], path: str | None) -> str:
        if path is not None:
            argv = [*argv, "--", self._checked_rel(path)]
        root = str(self.root)
        command = [
            "git",
            "--no-pager",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "log.showSignature=false",
            "-c",
            f"safe.directory={root}",
            "-c",
            "diff.external=",
            "-c",
            "core.pager=cat",
            *argv,
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "GIT_OPTIONAL_LOCKS": "0",
            "HOME": root,
            "LC_ALL": "C",
        }
        try:
            done = subprocess.run(
                command,
                cwd=root,
                env=env,
                capture_output=True,
                timeout=self.limits.git_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Refused("git took too long") from None
        if done.returncode != 0:
            raise Refused(f"git: {_decode(done.stderr).strip()[:300]}")
        return _redact_keys(_decode(done.stdout))

    def _cap(self, text: str) -> str:
        limit = self.limits.max_output_chars
        if len(text) <= limit:
            return text
        return text[:limit] + f"\n[truncated: {len(text) - limit} more chars]"


def _is_git_top_level(root: Path) -> bool:
    if not (root / ".git").exists():
        return False
    try:
        done = subprocess.run(
            ["git", "-c", f"safe.directory={root}", "rev-parse", "--show-toplevel"],
            cwd=root,
            capture_output=True,
            timeout=5,
            check=False,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "HOME": str(root),
            },
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and Path(_decode(done.stdout).strip()).resolve() == root


def _redact_keys(text: str) -> str:
    """History can hold a key that the tree no longer has: never pass one on."""
    return PEM_BLOCK.sub("[private key redacted]", text)


def _rev(raw: str) -> str:
    if not SAFE_REV.fullmatch(raw) or raw.startswith("-"):
        raise Refused(f"{raw!r} is not a revision")
    return raw


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Glob to regex over relative POSIX paths: ** spans directories, * stays inside one."""
    out, i = [], 0
    text = pattern.removeprefix("./")
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _error(message: str, summary: str) -> ToolResult:
    return ToolResult(ok=False, content=message, summary=summary)


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return validation_problems(exc, whole="arguments", limit=3)
    return str(exc)[:200]


def _named_path(args: BaseModel) -> str:
    """The path a failed call named (the model's text), to follow the tool's name."""
    path = getattr(args, "path", None)
    return f" for {path[:200]!r}" if isinstance(path, str) else ""
