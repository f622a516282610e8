"""Every bench in bench/ in its smoke mode, run as a person runs it (a subprocess of its own,
on a throwaway database it creates and drops), so that none quietly stops working.

A smoke mode uses tiny parameters and checks its own sanity, not its target: the counts it
measures are non-zero and agree with each other, the setup gave it what it measures (runs
admitted past the per-user cap, every stream flowing), and it exits 1 when they do not.
Elsewhere: bench/socket_flood.py (tests/test_socket_flood_bench.py), bench/structured.py
(the real llama-server tier), bench/prefill.py (its own test).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from devtools.testing import ROOT, manage_env

pytestmark = pytest.mark.slow

# bench -> (extra arguments, what its output must say)
SMOKES: dict[str, tuple[list[str], list[str]]] = {
    "citation_scan": ([], [r"corpus: [1-9]\d* answers, \d+ chars, [1-9]\d* citations"]),
    "gitread": ([], [r"fingerprint \(HEAD, status, walk\): n=1"]),
    "prompt_cache": ([], [r"statuses succeeded/succeeded", r"shared prompt prefix: [1-9]"]),
    "pane_render": ([], [r"timeline: 4 lanes, [1-9]\d* stretches", r"live redraw"]),
    "scheduler": ([], [r"hand-off latency .*: n=4 ", r"max concurrent streams [12];"]),
    "fairness": ([], [r"bob's run finished: \d", r"'pending': [1-9]"]),
    "slot_waits": ([], [r"estimate / real wait, now: n=[1-9]\d* median=\d", r"places: [1-9]"]),
    "stream_latency": ([], [r"statuses=\['succeeded'\]", r"chunks matched=[1-9]\d*"]),
    "delivery": ([], [r"^ +2 +400 +[1-9]\d* +[1-9]\d* "]),
    "soak": ([], [r"all runs finished, no event lost: yes", r"panes checked=[1-9]"]),
}


# Most of a smoke is waiting (a server starting, a stream's pacing), so three run at once:
# the module takes about as long as its slowest smokes, not their sum.
AT_ONCE = 3


def run_smoke(bench: str) -> subprocess.CompletedProcess[str]:
    extra = SMOKES[bench][0]
    if bench == "soak":  # serve and a worker over Redis when the tests have one, else serve
        extra = [*extra, "--redis-url", os.environ.get("TEST_REDIS_URL", "")]
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{bench}.py"), "--smoke", *extra],
        cwd=ROOT,
        env=manage_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def smokes(django_db_setup: None) -> Iterator[dict[str, Future[subprocess.CompletedProcess[str]]]]:
    """Every smoke, started at once on a pool (the database server's address comes from the
    tests' settings; each bench makes and drops a database of its own there)."""
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        # The slowest first, so the last to start are short.
        order = ["delivery", "stream_latency", "soak", "pane_render", "scheduler"]
        order += sorted(set(SMOKES) - set(order))
        yield {bench: pool.submit(run_smoke, bench) for bench in order}


@pytest.mark.parametrize("bench", sorted(SMOKES))
def test_bench_smoke(
    bench: str, smokes: dict[str, Future[subprocess.CompletedProcess[str]]]
) -> None:
    done = smokes[bench].result()
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for pattern in SMOKES[bench][1]:
        assert re.search(pattern, done.stdout, re.M), (pattern, done.stdout[-3000:])
