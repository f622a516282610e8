"""Promise A: several endpoints per provider, against real llama-servers (the tiny random model).

Each server sits behind a counting proxy (counting_proxy.py) that records how many completion
requests were open through it at once; the orchestrator only ever sees the proxies. Runs go
through the public CLI, `launch_flow code-review --band large --fast --wait`, as alice, on the
test database; afterwards the API's run detail and the pane are read as alice.

Promised: (1) a large review uses both endpoints; (2) no endpoint ever has more requests open
than its own `/props` `total_slots` (also with a second worker process); (3) killing one server
mid-run loses no agent; (4) a server that comes back is used again by itself; (6) the run
detail gives each agent an `endpoint` string and the pane shows it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .counting_proxy import CountingProxy
from .harness import (
    TRACEBACK,
    Launched,
    agents_of,
    finish_launch,
    start_launch,
    wait_during,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MODEL = "llama-cpp/tiny"
FINISHED = {"succeeded", "failed", "cancelled", "skipped"}
# A failure a dead endpoint would cause (as opposed to the random model's own bad output).
KILL_WORDS = re.compile(
    r"connect|refus|reset|unavailable|unreachable|closed|disconnect|peer|EOF|went away|"
    r"endpoint|down\b|killed",
    re.IGNORECASE,
)


def as_list(*proxies: CountingProxy) -> dict[str, str]:
    """The endpoints as ORCHESTRATOR_PROVIDERS' list form."""
    urls = [proxy.base_url for proxy in proxies]
    return {
        "ORCHESTRATOR_MODEL": MODEL,
        "ORCHESTRATOR_PROVIDERS": json.dumps({"llama-cpp": {"base_url": urls}}),
    }


def as_commas(*proxies: CountingProxy) -> dict[str, str]:
    """The endpoints as ORCHESTRATOR_BASE_URL's comma-separated form."""
    return {
        "ORCHESTRATOR_MODEL": MODEL,
        "ORCHESTRATOR_BASE_URL": ",".join(proxy.base_url for proxy in proxies),
    }


@pytest.fixture
def accepted(manage: Any) -> Callable[[dict[str, str]], None]:
    """`accepted(env)`: the start checks take the endpoint list, else the test fails here, at
    the feature's boundary, with the product's own sentence."""

    def check(env: dict[str, str]) -> None:
        done = manage("check", env=env)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            pytest.fail(f"feature boundary: the endpoint list is refused:\n{output}", pytrace=False)

    return check


def outcomes(api: Callable[[str], Any], launched: Launched) -> list[dict[str, Any]]:
    """Every agent of the run, each checked to have ended with an outcome."""
    assert TRACEBACK not in launched.output, launched.output[-4000:]
    assert launched.run_id, f"launch_flow named no run:\n{launched.output[-3000:]}"
    agents = agents_of(api(f"runs/{launched.run_id}"))
    assert len(agents) == 8, f"a large code review has 8 agents, the run detail {len(agents)}"
    for agent in agents:
        state = agent.get("status") or agent.get("state")
        assert state in FINISHED, f"agent {agent.get('key')} ended as {state!r}"
    summary = {a.get("key"): a.get("status") or a.get("state") for a in agents}
    print(f"run {launched.run_id[:8]} exit {launched.returncode}: {summary}")
    return agents


def counts(*proxies: CountingProxy) -> str:
    return "; ".join(
        f"{proxy.address}: max open {proxy.counts.max_open}, requests {proxy.counts.started},"
        f" answered {proxy.counts.answered}, not ok {proxy.counts.not_ok}"
        for proxy in proxies
    )


def test_a_large_review_uses_both_endpoints_each_within_its_own_slots(
    llama: Callable[..., Any],
    proxies: Callable[..., CountingProxy],
    cli_env: Callable[..., dict[str, str]],
    accepted: Callable[[dict[str, str]], None],
    launch: Callable[..., Launched],
    shop: Path,
    tmp_path: Path,
    api: Callable[[str], Any],
    pane: Callable[[str], str],
) -> None:
    """(1), (2), (6) with the list form: two slots on one server, one on the other."""
    two, one = proxies(llama(slots=2)), proxies(llama(slots=1))
    env = cli_env(**as_list(two, one))
    accepted(env)
    launched = launch(env, shop, band="large", timeout=170)
    print(counts(two, one))
    assert launched.returncode in (0, 3), launched.output[-3000:]
    agents = outcomes(api, launched)
    assert two.counts.started and one.counts.started, f"not both endpoints used: {counts(two, one)}"
    assert two.counts.max_open <= 2, f"more than 2 open on 2 slots: {counts(two, one)}"
    assert one.counts.max_open <= 1, f"more than 1 open on 1 slot: {counts(two, one)}"
    # Six specialists want a slot at once: the two-slot server's own total_slots is used.
    assert two.counts.max_open == 2, f"the second slot was never used: {counts(two, one)}"

    # (6) Each agent's endpoint, in the API and in the pane.
    addresses = {two.address, one.address}
    seen = set()
    for agent in agents:
        endpoint = agent.get("endpoint")
        assert isinstance(endpoint, str) and endpoint, f"agent without an endpoint: {agent}"
        matching = [address for address in addresses if address in endpoint]
        assert len(matching) == 1, f"{agent.get('key')}: endpoint {endpoint!r} is neither proxy"
        seen.update(matching)
    assert seen == addresses, f"the run detail names only {seen} of {addresses}"
    # The pane names each agent's endpoint: each endpoint is the only one named in at least as
    # many pieces of the page's text as it has agents (a piece naming both, such as the
    # report's Method line, says nothing about any one agent).
    html = pane(launched.run_id or "")
    (tmp_path / "pane.html").write_text(html)
    pieces = re.findall(r">([^<]+)<", html)
    for address in addresses:
        on_it = [a["key"] for a in agents if address in str(a["endpoint"])]
        others = addresses - {address}
        alone = [p for p in pieces if address in p and not any(o in p for o in others)]
        assert len(alone) >= len(on_it), (
            f"the pane names {address} alone {len(alone)} times for its agents {on_it}"
        )


def test_the_comma_separated_base_url_spreads_a_review_within_slots(
    llama: Callable[..., Any],
    proxies: Callable[..., CountingProxy],
    cli_env: Callable[..., dict[str, str]],
    accepted: Callable[[dict[str, str]], None],
    launch: Callable[..., Launched],
    shop: Path,
    api: Callable[[str], Any],
) -> None:
    """(1), (2) with ORCHESTRATOR_BASE_URL="URL1,URL2", one slot each."""
    first, second = proxies(llama(slots=1)), proxies(llama(slots=1))
    env = cli_env(**as_commas(first, second))
    accepted(env)
    launched = launch(env, shop, band="large", timeout=170)
    print(counts(first, second))
    assert launched.returncode in (0, 3), launched.output[-3000:]
    outcomes(api, launched)
    assert first.counts.started and second.counts.started, counts(first, second)
    assert first.counts.max_open <= 1 and second.counts.max_open <= 1, counts(first, second)


def test_killing_one_server_mid_run_loses_no_agent(
    llama: Callable[..., Any],
    proxies: Callable[..., CountingProxy],
    cli_env: Callable[..., dict[str, str]],
    accepted: Callable[[dict[str, str]], None],
    shop: Path,
    tmp_path: Path,
    api: Callable[[str], Any],
) -> None:
    """(3) One server is killed (SIGKILL; its proxy stops listening and cuts its connections,
    as a dead server looks) while it serves an agent; the run still finishes, every agent
    has an outcome and none failed for the kill."""
    survivor_server, doomed_server = llama(slots=1), llama(slots=1)
    survivor = proxies(survivor_server, first_byte_delay=0.3)
    doomed = proxies(doomed_server, first_byte_delay=0.3)
    env = cli_env(**as_list(survivor, doomed))
    accepted(env)
    log = tmp_path / "launch-kill.log"
    process = start_launch(env, shop, band="large", log=log)
    try:
        wait_during(
            process,
            log,
            lambda: doomed.counts.answered >= 1 and doomed.counts.open >= 1,
            90,
            lambda: f"a second request open on the doomed endpoint ({counts(survivor, doomed)})",
        )
        doomed.pause()
        doomed_server.kill()
        killed_at = time.monotonic()
        launched = finish_launch(process, log, timeout=170)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(counts(survivor, doomed))
    agents = outcomes(api, launched)
    assert survivor.started_since(killed_at) >= 1, "nothing ran on the survivor after the kill"
    assert survivor.counts.max_open <= 1, counts(survivor, doomed)
    assert launched.returncode in (0, 3), f"the run failed:\n{launched.output[-3000:]}"
    for agent in agents:
        if (agent.get("status") or agent.get("state")) == "failed":
            text = json.dumps(agent)
            assert not KILL_WORDS.search(text), f"{agent.get('key')} failed for the kill: {text}"


def test_a_server_that_comes_back_is_used_again(
    llama: Callable[..., Any],
    proxies: Callable[..., CountingProxy],
    cli_env: Callable[..., dict[str, str]],
    accepted: Callable[[dict[str, str]], None],
    shop: Path,
    tmp_path: Path,
    api: Callable[[str], Any],
) -> None:
    """(4) A server killed mid-run and started again on its port gets requests again before
    the run ends, without anyone telling the orchestrator. The steady server answers slowly
    (2.5 s to its first byte, added by its proxy) so the run outlasts the restart."""
    steady_server, flaky_server = llama(slots=1), llama(slots=1)
    steady = proxies(steady_server, first_byte_delay=2.5)
    flaky = proxies(flaky_server, first_byte_delay=0.3)
    env = cli_env(**as_commas(steady, flaky))
    accepted(env)
    log = tmp_path / "launch-comeback.log"
    process = start_launch(env, shop, band="large", log=log)
    try:
        wait_during(
            process,
            log,
            lambda: flaky.counts.answered >= 1,
            90,
            lambda: f"a request answered by the flaky endpoint ({counts(steady, flaky)})",
        )
        flaky.pause()
        flaky_server.kill()
        killed_at = time.monotonic()
        wait_during(
            process,
            log,
            lambda: steady.started_since(killed_at) >= 1,
            60,
            lambda: f"a request on the steady endpoint after the kill ({counts(steady, flaky)})",
        )
        flaky_server.start()
        flaky.resume()
        back_at = time.monotonic()
        launched = finish_launch(process, log, timeout=170)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    print(counts(steady, flaky))
    outcomes(api, launched)
    assert flaky.started_since(back_at) >= 1, (
        f"the server came back {time.monotonic() - back_at:.0f}s before the run ended and got"
        f" no request: {counts(steady, flaky)}"
    )
    assert steady.counts.max_open <= 1 and flaky.counts.max_open <= 1, counts(steady, flaky)


def test_two_worker_processes_keep_each_endpoint_within_its_slots(
    llama: Callable[..., Any],
    proxies: Callable[..., CountingProxy],
    cli_env: Callable[..., dict[str, str]],
    accepted: Callable[[dict[str, str]], None],
    launch: Callable[..., Launched],
    shop: Path,
    tmp_path: Path,
    api: Callable[[str], Any],
    redis_url: str | None,
    stop: Callable[[Any], None],
) -> None:
    """(2) across processes: `launch_flow --wait` and a `runworker orchestrator.dispatch`
    share the run (REDIS_URL set for both, two agents at most in each process, so both must
    take some of the six specialists); one slot on each endpoint."""
    from devtools.testing import start_manage
    from runs.models import AgentSession

    if redis_url is None:
        pytest.fail("no Redis answers on 127.0.0.1:6379 and TEST_REDIS_URL is unset")
    first = proxies(llama(slots=1), first_byte_delay=0.3)
    second = proxies(llama(slots=1), first_byte_delay=0.3)
    env = cli_env(
        REDIS_URL=redis_url, ORCHESTRATOR_WORKER_CONCURRENCY="2", **as_list(first, second)
    )
    accepted(env)
    worker_log = tmp_path / "w.log"
    worker = start_manage(
        "runworker", "orchestrator.dispatch", env={**env, "LOG_LEVEL": "INFO"}, log=worker_log
    )
    try:
        # The run is launched once the worker says it has started, or it may all be over
        # before the worker looks.
        deadline = time.monotonic() + 60
        while "started" not in worker_log.read_text(errors="replace"):
            assert worker.poll() is None, f"the worker ended:\n{worker_log.read_text()}"
            assert time.monotonic() < deadline, (
                f"the worker never started:\n{worker_log.read_text()}"
            )
            time.sleep(0.1)
        launched = launch(env, shop, band="large", timeout=170)
    finally:
        stop(worker)
    print(counts(first, second))
    worker_output = worker_log.read_text(errors="replace")
    assert TRACEBACK not in worker_output, worker_output[-3000:]
    assert launched.returncode in (0, 3), launched.output[-3000:]
    outcomes(api, launched)
    workers = set(
        AgentSession.objects.filter(step__run_id=launched.run_id).values_list("worker", flat=True)
    )
    assert len(workers) >= 2, f"one process ran every agent ({workers}): nothing was shared"
    assert first.counts.started and second.counts.started, counts(first, second)
    assert first.counts.max_open <= 1 and second.counts.max_open <= 1, counts(first, second)
