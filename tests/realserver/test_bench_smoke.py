"""The real-server benches in their smoke modes, as a person runs them (a subprocess): they
start their own llama-server from the tier's build and check their own sanity."""

from __future__ import annotations

import subprocess
import sys

from devtools.testing import ROOT


def test_structured_bench_smoke() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "structured.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "prose, no thinking" in done.stdout
    assert "cut at max_tokens 20: finish_reason 'length'" in done.stdout
