"""Git tools' speed: each answer of runs.engine.target.gitread (shadow directory, killable git,
our own working-tree reads) against the plain git command it replaces, on a generated
repository with thousands of commits, and the read-only fingerprint of the same tree.

    .venv/bin/python bench/gitread.py [--commits 3000] [--files 300] [--rounds 5] [--smoke]

`--smoke`: 60 commits, 20 files, one round; every answer must still be ok (it exits 1 if not).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import describe

from runs.engine.target.fingerprint import take
from runs.engine.target.gitread import GitReader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=3000)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a tiny history, one round")
    args = parser.parse_args()
    if args.smoke:
        args.commits, args.files, args.rounds = 60, 20, 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        started = time.perf_counter()
        build(root, args.commits, args.files)
        print(
            f"repository: {args.commits} commits, {args.files + 1} files, "
            f"built in {time.perf_counter() - started:.1f}s"
        )
        measure(root, args.rounds)


def build(root: Path, commits: int, files: int) -> None:
    """A history where core.py changes in every commit and three other files in each."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    rng = random.Random(1)
    contents = {
        f"src/mod{i:03d}.py": [f"line {j} of {i}" for j in range(200)] for i in range(files)
    }
    contents["core.py"] = [f"core {j}" for j in range(400)]
    stream = []
    for number in range(commits):
        changed = ["core.py", *rng.sample(sorted(contents), 3)] if number else sorted(contents)
        for name in changed:
            lines = contents[name]
            at = rng.randrange(len(lines))
            lines[at] = f"edit {number} at {at}"
        message = f"commit {number}".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(b"committer Bench <bench@example.com> %d +0000\n" % (1_600_000_000 + number))
        stream.append(b"data %d\n%s\n" % (len(message), message))
        for name in changed:
            data = ("\n".join(contents[name]) + "\n").encode()
            stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (name.encode(), len(data), data))
    subprocess.run(
        ["git", "-C", str(root), "fast-import", "--quiet"], input=b"".join(stream), check=True
    )
    subprocess.run(["git", "-C", str(root), "checkout", "-q", "-f", "main"], check=True)
    with (root / "core.py").open("a") as handle:
        handle.write("a working-tree change\n")


def measure(root: Path, rounds: int) -> None:
    reader = GitReader(root)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "HOME": str(root),
    }

    def plain(*args: str) -> Callable[[], object]:
        return lambda: subprocess.run(
            ["git", "-C", str(root), "--no-pager", *args], env=env, capture_output=True, check=True
        )

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("log 20", lambda: reader.log(), plain("log", "-20")),
        (
            "log 20 of one file",
            lambda: reader.log("src/mod007.py"),
            plain("log", "-20", "--", "src/mod007.py"),
        ),
        ("show HEAD", lambda: reader.show("HEAD"), plain("show", "HEAD")),
        (
            "show file at HEAD~50",
            lambda: reader.show("HEAD~50", "core.py"),
            plain("show", "HEAD~50:core.py"),
        ),
        (
            "blame 400 lines, 3000 commits",
            lambda: reader.blame("core.py", 1, 400),
            plain("blame", "-L1,400", "HEAD", "--", "core.py"),
        ),
        (
            "diff HEAD~50 HEAD",
            lambda: reader.diff("HEAD~50", "HEAD"),
            plain("diff", "HEAD~50", "HEAD"),
        ),
        ("diff HEAD vs working tree", lambda: reader.diff(), plain("diff", "HEAD")),
    ]
    for name, ours, theirs in cases:
        answer = ours()
        if not getattr(answer, "ok", False):
            raise SystemExit(f"{name}: gitread did not answer: {answer!r}"[:2000])
        print(describe(f"{name:32s} gitread", timed(ours, rounds)))
        print(describe(f"{name:32s} plain git", timed(theirs, rounds)))
    print(describe(f"{'fingerprint (HEAD, status, walk)':32s}", timed(lambda: take(root), rounds)))


def timed(work: Callable[[], object], rounds: int) -> list[float]:
    spent = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        spent.append(time.perf_counter() - started)
    return spent


if __name__ == "__main__":
    main()
