"""Promise B: a hostile model server. Flows run through the public CLI (`launch_flow --wait`)
against a loopback server (hostile_server.py) whose `/props` says total_slots is 0, -1,
10**12, "4", NaN or nothing, whose streamed chunks carry llama.cpp-style `prompt_progress`
and `timings` objects full of NaN, Infinity, negatives, processed > total, strings, huge
numbers, missing fields, control bytes and NULs, and whose answer text carries control bytes
and a NUL.

Promised: no traceback; every agent ends with an outcome (succeeded, or failed with a clear
sentence); no percentage outside 0-100 in the CLI's live lines, the API's run detail, the
pane or the report; no NUL or control byte in stored text; and, when the server reported a
sane number of slots, never more requests open at once than that.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .harness import (
    CONTROL,
    RUN_ID,
    TRACEBACK,
    Launched,
    agents_of,
    bad_percentages,
    finish_launch,
    numbers_in,
    start_launch,
    stored_control_bytes,
    strings_in,
)
from .hostile_server import HOSTILE_SLOTS, HostileModelServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FINISHED = {"succeeded", "failed", "cancelled", "skipped"}


@pytest.fixture
def run_against(
    cli_env: Callable[..., dict[str, str]],
    shop: Path,
    tmp_path: Path,
    api: Callable[[str], Any],
    pane: Callable[[str], str],
) -> Callable[..., tuple[Launched, list[str]]]:
    """`run_against(server, band=...)`: launch_flow --wait on the hostile server, to its end,
    reading the API's run detail and the pane all along (the prompt's progress shows only
    while it is read); the finished launch and what the live views showed that they must not."""

    def run(server: HostileModelServer, band: str = "small") -> tuple[Launched, list[str]]:
        env = cli_env(
            ORCHESTRATOR_MODEL="llama-cpp/hostile",
            ORCHESTRATOR_BASE_URL=server.base_url,
            ORCHESTRATOR_RETRY_SECONDS="8",
        )
        log = tmp_path / "launch.log"
        process = start_launch(env, shop, band=band, log=log)
        problems: list[str] = []
        looks = 0
        try:
            while process.poll() is None:
                found = RUN_ID.search(log.read_text(encoding="utf-8", errors="replace"))
                if found:
                    looks += 1
                    detail = api(f"runs/{found.group(1)}")
                    live = json.dumps(detail, ensure_ascii=False)
                    problems += [f"live run detail: {bad}" for bad in bad_percentages(live)]
                    problems += [
                        f"live run detail: {text!r}"
                        for text in strings_in(detail)
                        if CONTROL.search(text)
                    ]
                    html = pane(found.group(1))
                    problems += [f"live pane: {bad}" for bad in bad_percentages(html)]
                time.sleep(0.1)
            launched = finish_launch(process, log, timeout=110)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        print(f"looked at the live run {looks} times")
        assert looks, "the run ended before its live views could be read once"
        return launched, problems

    return run


def check_everything_a_person_sees(
    launched_and_live: tuple[Launched, list[str]],
    api: Callable[[str], Any],
    pane: Callable[[str], str],
) -> dict[str, Any]:
    """The checks every hostile run shares, after the run (the live ones are in `live`)."""
    launched, live = launched_and_live
    assert not live, f"the live views showed {len(live)} bad values, e.g. {live[:5]}"
    output = launched.output
    assert TRACEBACK not in output, f"a traceback reached the terminal:\n{output[-4000:]}"
    assert launched.run_id, f"launch_flow named no run:\n{output[-3000:]}"
    assert launched.returncode in (0, 3), (
        f"the run did not finish (exit {launched.returncode}):\n{output[-3000:]}"
    )
    detail = api(f"runs/{launched.run_id}")
    agents = agents_of(detail)
    for agent in agents:
        state = str(agent.get("status") or agent.get("state"))
        assert state in FINISHED, f"agent {agent.get('key')} ended as {state!r}: {agent}"
        if state == "failed":
            error = " ".join(
                str(agent.get(name) or "") for name in ("error", "reason", "why", "detail")
            ).strip()
            assert re.search(r"[A-Za-z]{3,} [A-Za-z]{2,}", error), (
                f"agent {agent.get('key')} failed without a sentence: {agent}"
            )
            assert TRACEBACK not in error and "Error(" not in error, error
    for text in strings_in(detail):
        assert not CONTROL.search(text), f"a control byte in the run detail: {text!r}"
    for path, value in numbers_in(detail):
        if "percent" in path.lower() or path.lower().endswith("pct"):
            assert 0 <= value <= 100, f"{path} = {value} in the run detail"
    report = api(f"runs/{launched.run_id}/report")
    report_json = api(f"runs/{launched.run_id}/report.json")
    for name, text in (
        ("the CLI's output", output),
        ("the run detail", json.dumps(detail, ensure_ascii=False)),
        ("the report", report),
        ("report.json", json.dumps(report_json, ensure_ascii=False)),
        ("the pane", pane(launched.run_id)),
    ):
        assert not bad_percentages(text), f"{name} shows {bad_percentages(text)[:5]}"
    assert not CONTROL.search(report), f"a control byte in the report: {report!r}"
    leaks = stored_control_bytes()
    assert not leaks, f"{len(leaks)} stored values hold control bytes, e.g. {leaks[:5]}"
    states = {str(agent.get("key")): agent.get("status") or agent.get("state") for agent in agents}
    print(f"run {launched.run_id[:8]} exit {launched.returncode}: {states}")
    return detail


@pytest.mark.parametrize("slots", list(HOSTILE_SLOTS))
def test_hostile_props_progress_and_timings_never_break_a_run(
    slots: str,
    run_against: Callable[..., tuple[Launched, list[str]]],
    api: Callable[[str], Any],
    pane: Callable[[str], str],
) -> None:
    with HostileModelServer(slots=slots) as server:
        launched = run_against(server)
    assert server.total > 0, "the run never asked the hostile server"
    check_everything_a_person_sees(launched, api, pane)


def test_a_sane_slot_count_is_never_exceeded_however_hostile_the_rest(
    run_against: Callable[..., tuple[Launched, list[str]]],
    api: Callable[[str], Any],
    pane: Callable[[str], str],
) -> None:
    """Two slots reported; a medium review has four specialists wanting them at once."""
    with HostileModelServer(slots="2", hold_seconds=0.6) as server:
        launched = run_against(server, band="medium")
    check_everything_a_person_sees(launched, api, pane)
    assert server.max_open <= 2, f"{server.max_open} requests open at once on 2 slots"
    assert server.max_open == 2, "the two slots the server reported were never both used"


def test_the_client_asks_for_prompt_progress_and_survives_it(
    run_against: Callable[..., tuple[Launched, list[str]]],
    api: Callable[[str], Any],
    pane: Callable[[str], str],
) -> None:
    """The hostile progress objects go only to a request that asks `return_progress` (as
    llama.cpp does): the run must ask for them, to be shown them, and still be fine."""
    with HostileModelServer(slots="1", progress_always=False) as server:
        launched = run_against(server)
    asked = [body.get("return_progress") for body in server.bodies if body.get("stream")]
    check_everything_a_person_sees(launched, api, pane)
    assert asked and all(asked), f"streamed requests asking return_progress: {asked}"
    assert server.max_open <= 1, f"{server.max_open} requests open at once on 1 slot"
