"""git calls for one tool call: a fresh shadow git directory, a clean environment, one deadline.

The object files git reads are the ones `gitshadow` opened and checked, handed to git as
descriptors. Every call runs the system `git` in its own process group with an environment
we build from nothing (no global, system or user config, no pager, no prompts, no replace
refs, no lazy fetch), against the shadow directory of `gitshadow`. A call that outlives the
deadline or prints more than the cap is killed; a git process, unlike code inside this one,
can always be stopped, whatever a hostile object store or a FIFO makes it do.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from runs.engine.target.gitlayout import GitLayout
from runs.engine.target.gitshadow import PINNED_INDEX, Pins, build_shadow, shadow_loose

STDERR_CAP = 16_384
CHUNK = 65_536
REVISION = re.compile(r"(?:@|[A-Za-z0-9_][A-Za-z0-9_./+-]{0,199})(?:[~^][0-9]{0,6}){0,20}")
EMPTY_TREES = frozenset(
    {
        "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
    }
)
REVISION_HELP = "use a commit id, a branch or tag name, or HEAD, optionally with ~N or ^N"


class GitFailed(Exception):
    """A git call that did not give an answer; the message is one sentence for the model."""


@dataclass(frozen=True, kw_only=True)
class GitLimits:
    timeout: float = 10.0  # for a whole tool call, every git process included
    max_output_bytes: int = 2_000_000  # what one git process may print before it is stopped
    max_blob_bytes: int = 4_000_000  # larger files are named, not shown or diffed
    max_patch_files: int = 300  # files in one patch
    max_patch_bytes: int = 16_000_000  # file contents gathered for one working-tree patch
    max_worktree_bytes: int = 256 * 1024 * 1024  # working-tree bytes hashed for one comparison


def check_revision(raw: str) -> str:
    """A revision an agent named, or GitFailed: no options, ranges, paths or reflog forms."""
    text = raw.strip()
    bad = (
        not REVISION.fullmatch(text)
        or ".." in text
        or "//" in text
        or text.endswith((".", "/", ".lock"))
    )
    if bad:
        raise GitFailed(f"{raw[:80]!r} is not a revision: {REVISION_HELP}")
    return text


class GitSession:
    """A shadow git directory that lives for one tool call; use as a context manager."""

    def __init__(self, layout: GitLayout, limits: GitLimits, deadline: float) -> None:
        self.layout = layout
        self.limits = limits
        self.deadline = deadline
        self._temp: Path | None = None
        self._pins = Pins()  # the checked files git reads, open until the call ends

    def __enter__(self) -> GitSession:
        self._temp = Path(tempfile.mkdtemp(prefix="orchestrator-git-"))
        try:
            (self.shadow).mkdir()
            (self._temp / "home").mkdir()
            (self._temp / "worktree").mkdir()
            (self._temp / "new-objects").mkdir()
            build_shadow(self.layout, self.shadow, self._pins)
            loose = self._pins.loose
            if loose is not None and loose.finish():
                self.check("index-pack", str(loose.path))  # git finds it by its index
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pins.close()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)  # unlinks links, never follows them
            self._temp = None

    @property
    def shadow(self) -> Path:
        assert self._temp is not None, "GitSession used outside its `with` block"
        return self._temp / "shadow"

    @property
    def scratch(self) -> Path:
        """A private folder for files this call writes (never the target)."""
        assert self._temp is not None, "GitSession used outside its `with` block"
        return self._temp

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        with_index: bool = False,
        cwd: Path | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, bytes, bytes]:
        """(exit code, stdout, stderr) of one git process; GitFailed if it had to be stopped."""
        git = shutil.which("git", path=os.environ.get("PATH", os.defpath))
        if git is None:
            raise GitFailed("git is not installed where the service runs")
        if self.left() <= 0:
            raise GitFailed(f"git took longer than {self.limits.timeout:g} s: stopped")
        cap = max_bytes or self.limits.max_output_bytes
        code, out, err, stopped = _bounded(
            [git, *args],
            self._env(with_index),
            cwd or self.scratch,
            stdin,
            self.deadline,
            cap,
            pass_fds=tuple(self._pins.fds),
        )
        if stopped == "time":
            raise GitFailed(f"git took longer than {self.limits.timeout:g} s: stopped")
        if stopped == "size":
            raise GitFailed(f"git printed more than {cap} bytes: stopped; narrow it with a path")
        return code, out, err

    def check(
        self,
        *args: str,
        stdin: bytes | None = None,
        with_index: bool = False,
        max_bytes: int | None = None,
    ) -> bytes:
        """stdout of a git process that must succeed; its error line otherwise."""
        code, out, err = self.run(*args, stdin=stdin, with_index=with_index, max_bytes=max_bytes)
        if code != 0:
            raise GitFailed(f"git: {_first_line(err)}")
        return out

    def resolve(self, revision: str, kind: str) -> str:
        """The id of the `kind` (commit or tree) `revision` names, or GitFailed."""
        rev = check_revision(revision)
        code, out, _ = self.run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{{kind}}}"
        )
        oid = out.decode("ascii", "replace").strip()
        if code != 0 or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", oid):
            found = self.object_type(rev)
            if found is None:
                raise GitFailed(f"no revision {rev!r} in this repository")
            raise GitFailed(f"{rev!r} names a {found}, not a {kind}")
        return oid

    def snapshot(self, revision: str) -> str:
        """A commit's id, or the empty tree's: a whole tree whose paths are the repository's.

        Any other tree is refused: inside a subtree `.ssh/config` is just `config`, and the
        secret rule could not see it."""
        if revision.strip() in EMPTY_TREES:
            return revision.strip()
        return self.resolve(revision, "commit")

    def object_type(self, spec: str) -> str | None:
        code, out, _ = self.run("cat-file", "-t", "--end-of-options", spec)
        return out.decode("ascii", "replace").strip() if code == 0 else None

    def sizes(self, oids: list[str]) -> dict[str, int]:
        """Sizes of the blobs among `oids` (others are left out)."""
        if not oids:
            return {}
        out = self.check("cat-file", "--batch-check", stdin="\n".join(oids).encode() + b"\n")
        sizes = {}
        for line in out.decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] == "blob" and parts[2].isdigit():
                sizes[parts[0]] = int(parts[2])
        return sizes

    def blobs(self, oids: list[str]) -> dict[str, bytes]:
        """The contents of blobs (each checked small enough by `sizes` first)."""
        sizes = self.sizes(oids)
        wanted = [oid for oid, size in sizes.items() if size <= self.limits.max_blob_bytes]
        if not wanted:
            return {}
        total = sum(sizes[oid] for oid in wanted) + 200 * len(wanted)
        out = self.check(
            "cat-file",
            "--batch",
            stdin="\n".join(wanted).encode() + b"\n",
            max_bytes=max(total, 1),
        )
        found: dict[str, bytes] = {}
        at = 0
        while at < len(out):
            end = out.index(b"\n", at)
            header = out[at:end].decode("ascii", "replace").split()
            if len(header) != 3 or not header[2].isdigit():
                break
            size = int(header[2])
            found[header[0]] = out[end + 1 : end + 1 + size]
            at = end + 1 + size + 1
        return found

    def _env(self, with_index: bool) -> dict[str, str]:
        home = str(self.scratch / "home")
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": home,
            "XDG_CONFIG_HOME": home,
            "GIT_DIR": str(self.shadow),
            # Reads go through the shadow's links; anything git might write lands here instead,
            # never in the target's object store.
            "GIT_OBJECT_DIRECTORY": str(self.scratch / "new-objects"),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.pathsep.join(
                [str(self.shadow / "objects"), str(shadow_loose(self.shadow))]
            ),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_SYSTEM": os.devnull,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "PAGER": "cat",
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_NO_LAZY_FETCH": "1",
            "LC_ALL": "C",
            "TZ": "UTC",
        }
        index = self.shadow / PINNED_INDEX
        if with_index and os.path.lexists(index):
            env["GIT_INDEX_FILE"] = str(index)
            env["GIT_WORK_TREE"] = str(self.scratch / "worktree")  # empty: nothing is read there
        return env


def _bounded(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    stdin: bytes | None,
    deadline: float,
    cap: int,
    *,
    pass_fds: tuple[int, ...] = (),
) -> tuple[int, bytes, bytes, str | None]:
    """Run argv, feeding stdin and collecting output until it exits, the deadline or the cap."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group, killed whole
        pass_fds=pass_fds,  # under the same numbers, so the shadow's /proc/self/fd links hold
    )
    out, err = bytearray(), bytearray()
    stopped: str | None = None
    pending = memoryview(stdin or b"")
    with selectors.DefaultSelector() as selector:
        assert proc.stdout is not None and proc.stderr is not None
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
            selector.register(proc.stdin, selectors.EVENT_WRITE, None)
        while selector.get_map() and stopped is None:
            left = deadline - time.monotonic()
            if left <= 0:
                stopped = "time"
                break
            for key, _ in selector.select(left):
                if key.data is None and proc.stdin is not None:
                    pending = _feed(selector, proc.stdin, pending)
                    continue
                chunk = os.read(key.fd, CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.data is err:
                    err.extend(chunk[: max(0, STDERR_CAP - len(err))])
                else:
                    out.extend(chunk)
                    if len(out) > cap:
                        stopped = "size"
    if stopped is not None:
        _kill(proc)
    try:
        code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        code = proc.wait()
        stopped = stopped or "time"
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return code, bytes(out), bytes(err), stopped


def _feed(selector: selectors.BaseSelector, pipe: IO[bytes], pending: memoryview) -> memoryview:
    fd = pipe.fileno()
    try:
        written = os.write(fd, pending[:CHUNK]) if pending else 0
    except BlockingIOError:
        written = 0  # the pipe is full; wait for git to read
    except BrokenPipeError:
        written = len(pending)  # git stopped reading: its answer says why
    pending = pending[written:]
    if not pending:
        selector.unregister(pipe)
        pipe.close()
    return pending


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _first_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    text = (lines[0] if lines else "failed").removeprefix("fatal: ").removeprefix("error: ")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "?", text)[:300]
