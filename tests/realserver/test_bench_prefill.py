"""The prefill bench in its smoke mode (bench/prefill.py --smoke): a small code-review run whose
answers the scripted model decides while a real llama-server (the tiny plain-attention model, one
slot) evaluates every prompt. The bench itself asserts that the orchestrator's counts and the
server's agree and that every request was evaluated; this test also reads the figures it prints.

It lives in the real-server tier, which builds llama-server once at collection (its
conftest) and marks it `realserver`: `-m "not realserver"` leaves it out with the tier."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.llamacpp.server import LlamaServer
from devtools.testing import ROOT, free_port, manage_env

pytestmark = [pytest.mark.slow]


def test_prefill_smoke_counts_agree_and_later_turns_reuse_the_cache(observed: Any) -> None:
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
    observed.note(
        "prefill bench (small code-review, 1 slot)",
        f"{total} prompt tokens sent, {evaluated} evaluated, {reused} reused; "
        f"later turns {later.group(2)}% from the cache",
    )


def test_prefill_smoke_on_two_servers_one_killed_loses_no_agent() -> None:
    """`--endpoints 2 --kill-one`: two llama-servers as one provider, one SIGKILLed with a
    request in flight after a third of the requests; the bench asserts every agent succeeded
    and no endpoint ever had more requests open than its slot."""
    bench = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "prefill.py"),
            "--smoke",
            "--endpoints",
            "2",
            "--kill-one",
        ],
        cwd=ROOT,
        env=manage_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(bench.stdout)
    assert bench.returncode == 0, bench.stdout + bench.stderr[-3000:]
    assert "smoke: ok" in bench.stdout
    served = [
        int(n) for n in re.findall(r"endpoint \d: (\d+) requests, at most 1 open", bench.stdout)
    ]
    assert len(served) == 2 and sum(served) > 0, bench.stdout
    assert re.search(r"killed at request \d+ of \d+", bench.stdout)


def test_the_tiny_hybrid_model_loads_and_answers_with_its_recurrent_layers(
    llama_artefacts: tuple[Path, Path], tmp_path: Path
) -> None:
    """The Qwen3.5 recipe is one llama.cpp b11434 loads as a hybrid (recurrent + attention)
    model, and a chat request gets an answer with the server's timings."""
    from devtools.llamacpp import hybrid_model

    assert [hybrid_model.is_recurrent(n) for n in range(hybrid_model.LAYERS)] == [
        True,
        True,
        True,
        False,
    ]
    server = LlamaServer(
        binary=llama_artefacts[0],
        model=hybrid_model.ensure_model(),
        port=free_port(),
        log_path=tmp_path / "hybrid.log",
        context=4096,
        extra_args=("--log-verbosity", "4"),  # the loader's lines name the architecture
    )
    with server:
        answer = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["timings"]["predicted_n"] > 0
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"print_info: arch\s+= qwen35\b", log)
    assert "llama_memory_recurrent" in log  # its Gated DeltaNet layers keep a recurrent state
