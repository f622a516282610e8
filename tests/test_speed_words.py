"""A speed is as wide as its precision needs: the pane's rate cell holds a demo model's tens of
thousands of tokens per second at every width (flows.report.rate owns the rule: the pane, the CLI and the Method table)."""

from __future__ import annotations

import re

import pytest

from flows.report import rate
from runs.models import FlowStep


@pytest.mark.parametrize(
    ("speed", "words"),
    [
        (None, ""),
        (0.0, ""),  # nothing generated: no speed, as when none was measured
        (0.04, "0.0"),
        (42.46, "42.5"),
        (99.94, "99.9"),
        (312.4, "312"),
        (2480.2, "2,480"),
        (31456.7, "31k"),
        (1_250_000.0, "1,250k"),
        (float("nan"), ""),
        (float("inf"), ""),
        (-3.0, ""),
    ],
)
def test_a_speed_in_words(speed, words):
    assert rate(speed) == words


@pytest.mark.django_db
def test_the_pane_shows_a_demo_models_speed_in_a_few_characters(alice, finished_run, client):
    """314,567 tokens in 10 s, as the demo model reports it."""
    run = finished_run
    FlowStep.objects.filter(run=run).update(decode_tokens=314_567, decode_seconds=10.0)
    client.force_login(alice)
    html = client.get(f"/runs/{run.id}/").content.decode()
    assert '<span class="m m-rate" title="decode speed the model server measured">31k' in html
    assert "31,456" not in html


@pytest.mark.django_db
def test_an_agent_that_generated_nothing_shows_no_speed_in_every_row(alice, finished_run, client):
    """No tokens out: a dash, also where the pane divides zero tokens by the model's time; never
    "0.0 tok/s" in one row and a dash in another."""
    from runs import live

    run = finished_run
    FlowStep.objects.filter(run=run).update(tokens_out=0, decode_tokens=0, decode_seconds=0.0)
    state = live.pane_state(run)
    for row in state.rows:
        with_model_time = live._row(run, row.step, row.state, row.position, 5.0)
        assert row.rate == with_model_time.rate == "", (row.step.key, with_model_time.rate)
    client.force_login(alice)
    html = client.get(f"/runs/{run.id}/").content.decode()
    cells = re.findall(r'<span class="m m-rate"[^>]*>([^<]*)<span class="k">tok/s', html)
    assert cells and set(cells) == {"\u2013 "}, cells
