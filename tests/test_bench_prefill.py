"""The prefill bench in its smoke mode (bench/prefill.py --smoke): a small code-review run whose
answers the scripted model decides while a real llama-server (the tiny plain-attention model, one
slot) evaluates every prompt. The bench itself asserts that the orchestrator's counts and the
server's agree and that every request was evaluated; this test also reads the figures it prints.

It needs what the real-server tier needs (the built llama-server), so it carries that tier's
marker: `-m "not realserver"` leaves it out with the tier."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devtools.llamacpp.build import ensure_server
from devtools.testing import ROOT, manage_env

pytestmark = [pytest.mark.slow, pytest.mark.realserver]


@pytest.fixture(scope="module")
def built_server() -> None:
    ensure_server(say=False)  # found in the cache when the tier already built it


def test_prefill_smoke_counts_agree_and_later_turns_reuse_the_cache(built_server: None) -> None:
    bench = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "prefill.py"), "--smoke"],
        cwd=ROOT,
        env=manage_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(bench.stdout)
    assert bench.returncode == 0, bench.stdout + bench.stderr[-3000:]
    assert "smoke: ok" in bench.stdout
    sent = re.search(r"prompt tokens sent (\d+), evaluated (\d+), reused (\d+)", bench.stdout)
    assert sent is not None
    total, evaluated, reused = map(int, sent.groups())
    assert total == evaluated + reused and evaluated > 0
    later = re.search(r"on later turns \(n=(\d+)\): (\d+)%", bench.stdout)
    assert later is not None
    # A small run's later turns extend their own conversation on a one-slot plain-attention
    # server: most of their prompt comes from the cache.
    assert int(later.group(1)) > 0 and int(later.group(2)) >= 50
