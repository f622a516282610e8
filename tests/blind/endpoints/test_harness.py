"""The blind harness checks itself: the detectors the scenarios rely on find what they look for,
so a scenario that passes passed because the product kept the promise, not because the
harness was blind to the breach."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from .counting_proxy import CountingProxy
from .harness import bad_percentages, stored_control_bytes
from .hostile_server import HOSTILE_PROGRESS, HOSTILE_TIMINGS, HostileModelServer


def test_the_percentage_reader_flags_only_shares_outside_0_to_100() -> None:
    fine = "cache 93% · 0% · 100%: 10 of 10 · 12.5 % · width: 100%; 1,000 tokens · a%20b"
    assert bad_percentages(fine) == []
    for shown in ("cache 150%", "-5%", "NaN%", "inf%", "1e+308%", "1,000%", "100.5 %"):
        assert bad_percentages(f"x {shown} y"), shown


@pytest.mark.django_db(transaction=True)
def test_the_stored_text_scan_finds_a_control_byte_in_text_and_in_json() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE blind_probe (note text, data jsonb)")
        try:
            assert stored_control_bytes() == []
            cursor.execute(
                "INSERT INTO blind_probe VALUES (%s, %s), (%s, %s)",
                ["bell\x07here", "{}", "clean", json.dumps({"k": ["esc\x1b[2J"]})],
            )
            found = stored_control_bytes()
        finally:
            cursor.execute("DROP TABLE blind_probe")
    assert len(found) == 2, found
    assert any("blind_probe.note" in each for each in found)
    assert any("blind_probe.data" in each for each in found)


def test_the_hostile_bodies_are_what_a_broken_server_sends() -> None:
    """Each hostile object parses as Python's lenient JSON (NaN, Infinity) and none is
    strict JSON throughout, so a client meets values a strict parser would refuse."""

    def strict(text: str) -> Any:
        def refuse(constant: str) -> Any:
            raise ValueError(constant)

        return json.loads(text, parse_constant=refuse)

    refused = 0
    for text in HOSTILE_PROGRESS + HOSTILE_TIMINGS:
        json.loads(text)
        try:
            strict(text)
        except ValueError:
            refused += 1
    assert refused >= 4


def test_the_proxy_counts_requests_open_at_once_and_looks_dead_when_paused() -> None:
    with (
        HostileModelServer(slots="4", hold_seconds=0.5) as server,
        CountingProxy(server.port) as proxy,
    ):
        props = httpx.get(f"http://{proxy.address}/props", timeout=5)
        assert props.status_code == 200  # forwarded (NaN and all), not counted

        def ask() -> None:
            httpx.post(
                f"{proxy.base_url}/chat/completions",
                json={"model": "hostile", "stream": True, "messages": []},
                timeout=10,
            )

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert proxy.counts.max_open == 3 == server.max_open
        assert proxy.counts.answered == 3 and proxy.counts.open == 0

        proxy.pause()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{proxy.address}/props", timeout=2)
        back = time.monotonic()
        proxy.resume()
        ask()
        assert proxy.started_since(back) == 1 and proxy.counts.open == 0
