"""Framing by allowed hosts: the embedded pane's frame-ancestors, every other page's refusal,
the cookie setting a host on another site needs, the origins the pane talks to; and what the
launcher says about each band."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from devtools.testing import ROOT, manage_env
from runs.models import FlowRun, RunStatus, WorkspaceLayout
from runs.services import launch_run
from runs.workspace import band_facts

HOST = "http://127.0.0.1:5173"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def frame_ancestors(response: Any) -> list[str]:
    for part in response["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        if name == "frame-ancestors":
            return values
    raise AssertionError("no frame-ancestors in the policy")


@pytest.mark.django_db
class TestFraming:
    def test_the_embedded_pane_may_be_framed_by_the_site_and_the_embed_origins_only(
        self, alice, finished_run, settings
    ):
        settings.ORCHESTRATOR_EMBED_ORIGINS = [HOST]
        response = client_for(alice).get(f"/runs/{finished_run.id}/?embed=1")
        assert frame_ancestors(response) == ["'self'", HOST]
        assert "X-Frame-Options" not in response

    def test_every_other_page_refuses_frames_from_anywhere_else(
        self, alice, finished_run, settings
    ):
        settings.ORCHESTRATOR_EMBED_ORIGINS = [HOST]
        client = client_for(alice)
        for url in (f"/runs/{finished_run.id}/", "/workspace/", "/runs/", "/api/v1/docs"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert frame_ancestors(response) == ["'self'"], url
            assert response["X-Frame-Options"] == "DENY", url

    def test_the_pane_names_the_origins_it_talks_to_own_first_and_the_contract_version(
        self, alice, finished_run, settings
    ):
        settings.ORCHESTRATOR_EMBED_ORIGINS = [HOST]
        html = client_for(alice).get(f"/runs/{finished_run.id}/?embed=1").content.decode()
        found = re.search(r'<script id="pane-host" type="application/json">(.*?)</script>', html)
        assert found is not None
        assert json.loads(found[1]) == {"origins": ["http://testserver", HOST], "version": 1}
        assert "orchestrator/host.js" in html

    def test_a_pane_that_is_not_embedded_talks_to_no_host(self, alice, finished_run):
        html = client_for(alice).get(f"/runs/{finished_run.id}/").content.decode()
        assert 'id="pane-host"' not in html and "host.js" not in html


def settings_in_a_fresh_process(**env: str) -> subprocess.CompletedProcess[str]:
    """Load the settings as the server does at start, with this environment."""
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE, s.SESSION_COOKIE_SECURE)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=manage_env(DJANGO_SETTINGS_MODULE="orchestrator_site.settings", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cookies_are_lax_by_default_which_serves_a_host_on_the_same_site():
    loaded = settings_in_a_fresh_process()
    assert loaded.stdout.split() == ["Lax", "Lax", "False"], loaded.stderr


def test_cross_site_cookies_are_refused_at_start_without_secure_cookies():
    refused = settings_in_a_fresh_process(ORCHESTRATOR_EMBED_COOKIES="cross-site")
    assert refused.returncode != 0
    assert "ORCHESTRATOR_EMBED_COOKIES=cross-site needs SECURE_COOKIES=true" in refused.stderr


def test_cross_site_cookies_over_https_are_samesite_none_and_secure():
    loaded = settings_in_a_fresh_process(
        ORCHESTRATOR_EMBED_COOKIES="cross-site", SECURE_COOKIES="true"
    )
    assert loaded.stdout.split() == ["None", "None", "True"], loaded.stderr


def test_an_unknown_cookie_mode_is_named_at_start():
    refused = settings_in_a_fresh_process(ORCHESTRATOR_EMBED_COOKIES="everywhere")
    assert refused.returncode != 0
    assert "ORCHESTRATOR_EMBED_COOKIES must be one of same-site, cross-site" in refused.stderr


@pytest.mark.django_db
class TestWorkspacePanes:
    def test_opening_a_launched_run_remembers_it_and_answers_with_its_pane(self, alice, target_dir):
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        response = client_for(alice).post("/workspace/layout/", {"open": str(run.id)})
        assert response.status_code == 200
        html = response.content.decode()
        assert f'data-run="{run.id}"' in html and f"/runs/{run.id}/?embed=1" in html
        assert WorkspaceLayout.objects.get(owner=alice).open_runs == [run.id]

    def test_another_persons_run_does_not_open(self, alice, bob, target_dir):
        run = launch_run(flow="code-review", target=str(target_dir), owner=bob)
        response = client_for(alice).post("/workspace/layout/", {"open": str(run.id)})
        assert response.status_code == 404
        assert not WorkspaceLayout.objects.filter(owner=alice, open_runs__contains=[run.id])


def finished(owner: Any, target: Path, band: str, minutes: float) -> FlowRun:
    run = launch_run(flow="code-review", target=str(target), owner=owner, band=band)
    start = timezone.now() - timedelta(hours=1)
    FlowRun.objects.filter(id=run.id).update(
        status=RunStatus.SUCCEEDED, started_at=start, finished_at=start + timedelta(minutes=minutes)
    )
    return run


@pytest.mark.django_db
class TestBands:
    def test_each_band_names_its_agents_and_says_when_none_ran_yet(self, alice):
        facts = band_facts(alice)["code-review"]
        assert facts["small"] == {
            "agents": "4 agents: Correctness, Security, Synthesizer, Validator",
            "took": "no runs yet",
        }
        assert facts["large"]["agents"].startswith("8 agents: ")

    def test_a_band_says_the_median_of_my_finished_runs_and_not_anyone_elses(
        self, alice, bob, target_dir
    ):
        for minutes in (2, 4, 9):
            finished(alice, target_dir, "medium", minutes)
        finished(bob, target_dir, "medium", 60)
        cancelled = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        FlowRun.objects.filter(id=cancelled.id).update(status=RunStatus.CANCELLED)
        facts = band_facts(alice)["code-review"]
        assert facts["medium"]["took"] == "took 4 min 0 s here (median of 3 runs)"
        assert facts["small"]["took"] == "no runs yet"
        assert band_facts(bob)["code-review"]["medium"]["took"] == (
            "took 1 h 00 min here (median of 1 run)"
        )
