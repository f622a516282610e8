"""Citation scan benchmark: time to find citations in hostile texts at the scan cap, and in the
citation corpus. The scan must stay linear: doubling the text at most about doubles the time.

    .venv/bin/python bench/citation_scan.py [--repeat 3] [--smoke]

`--smoke` scans the texts at a twentieth of the cap, once, and exits 1 unless the corpus
yields citations (tests/test_bench_smoke.py runs it).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from common import ROOT

from flows.citation_scan import MAX_SCAN_CHARS, scan


def hostile(n: int) -> dict[str, str]:
    """Texts of about n characters built to make a careless scanner backtrack or loop."""
    return {
        "one path-like token": "a/" * (n // 2 - 8) + "x.py:12",
        "colons and digits": "a.py:1:" * (n // 7),
        "backtick runs of every length": "".join("`" * (i % 50 + 1) + "x" for i in range(n // 26)),
        "'line 1' again and again": "line 1 " * (n // 7),
        "a path, then line words": "`a.py` " + "line 1, " * (n // 8),
        "unclosed brackets": "[" * n,
        "links": "[a](b#L1)" * (n // 9),
        "dash ranges": "a.py:1\u2013" * (n // 7),
        "table rows": "| File | Line |\n|---|---|\n" + "| a.py | 1 |\n" * (n // 13),
        "file headings and Line N": "### `a.py`\nLine 1\n" * (n // 18),
        "fences": "```\na.py:1\n" * (n // 10),
        "'L1 in' again and again": "L1 in " * (n // 6),
        "control bytes": "\x00\x01a.py:1" * (n // 8),
        "a 200k-digit line number": "a.py:" + "9" * (n - 10),
        "names around many citations": "`a_b` and `c_d` at a.py:1, not `e_f`; " * (n // 38),
        "one sentence of citations": "x_y a.py:1 " * (n // 11),
        "a JSON block of objects": "```json\n["
        + '{"file": "a.py", "line": 1, "code": "\\"{"}, ' * (n // 45)
        + "{}]\n```",
        "open quotes and braces": '{"\\"' * (n // 4),
        "grep paths with spaces": "```\n" + "a b c d.py:1:x\n" * (n // 15) + "```",
        "traceback lines": "```\n" + '  File "a.py", line 1, in f\n    x = 1\n' * (n // 38),
    }


def timed(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small texts, once; sanity only")
    args = parser.parse_args()
    size = MAX_SCAN_CHARS // 20 if args.smoke else MAX_SCAN_CHARS
    repeat = 1 if args.smoke else args.repeat
    half, full = hostile(size // 2), hostile(size)
    print(f"{'hostile text':34} {'chars':>8} {'found':>7} {'time':>8} {'x2 text':>8}")
    worst = 0.0
    for name, text in full.items():
        found = len(scan(text))
        seconds = timed(lambda t=text: scan(t), repeat)  # type: ignore[misc]
        small = timed(lambda t=half[name]: scan(t), repeat)  # type: ignore[misc]
        worst = max(worst, seconds)
        ratio = seconds / small if small > 0.001 else float("nan")
        print(f"{name:34} {len(text):>8} {found:>7} {seconds:>7.3f}s {ratio:>7.1f}x")
    corpus = sorted((ROOT / "tests" / "data" / "citation_corpus").glob("*.md"))
    texts = [p.read_text() for p in corpus]
    seconds = timed(lambda: [scan(t) for t in texts], repeat)
    found = sum(len(scan(t)) for t in texts)
    chars = sum(map(len, texts))
    print(f"corpus: {len(texts)} answers, {chars} chars, {found} citations, {seconds * 1e3:.1f} ms")
    print(f"worst hostile text at {size:,} chars (the cap: {MAX_SCAN_CHARS:,}): {worst:.2f}s")
    if not texts or not found:
        raise SystemExit(f"the citation corpus gave {len(texts)} answers, {found} citations")


if __name__ == "__main__":
    main()
